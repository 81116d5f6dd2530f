/* netvirt's eBPF programs: map layouts shared with user space (dataplane/ebpf/layouts.py mirrors
 * every struct here byte for byte) and the packet parsing every program does.
 *
 * Addresses are kept as network-order 32-bit words (IPv4 in word 0, the rest zero); ports, marks
 * and indices in host order. A field a packet does not have holds NV_NONE (ports, ICMP type and
 * code), so no rule value can match it - the simulator's None.
 */
#ifndef NETVIRT_H
#define NETVIRT_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define NV_NONE 0x10000u /* a port / ICMP field the packet does not carry */

#define NV_TCP 6
#define NV_UDP 17
#define NV_ICMP 1
#define NV_ICMPV6 58
#define NV_FRAGMENT 44 /* IPv6 fragment extension header */

/* connection-tracking states (graph.CtState), as rule keys carry them */
#define NV_CT_NEW 1
#define NV_CT_ESTABLISHED 2
#define NV_CT_RELATED 3

/* the fields of a packet a rule can match (graph.Match), as one hash key */
struct nv_key {
	__u32 tuple; /* chain * NV_MAX_TUPLES + the tuple's position; 0xffffffff: the unmasked packet */
	__u32 src[4];
	__u32 dst[4];
	__u32 src_port;
	__u32 dst_port;
	__u32 icmp_type;
	__u32 icmp_code;
	__u32 in_ifindex;
	__u32 out_ifindex;
	__u32 mark;
	__u8 family;
	__u8 proto;
	__u8 ct_state;
	__u8 pad;
};

/* a connection-tracking tuple (sim netfilter.Flow) */
struct nv_flow {
	__u32 src[4];
	__u32 dst[4];
	__u16 src_port;
	__u16 dst_port;
	__u8 family;
	__u8 proto;
	__u8 pad[2];
};

/* What a packet's parse found. */
struct nv_packet {
	struct nv_flow flow;   /* ports: TCP/UDP ports, the echo identifier for ICMP echo, else 0 */
	__u32 l3;              /* offsets from the frame start */
	__u32 l4;
	__u32 icmp_type;       /* NV_NONE unless ICMP with a readable header */
	__u32 icmp_code;
	__u8 has_ports;        /* TCP/UDP and the first fragment */
	__u8 icmp_error;
	__u8 first;            /* a whole datagram or its first fragment: the transport header is here */
	__u8 pad;
};

static __always_inline int nv_is_icmp_error(__u8 proto, __u32 type)
{
	if (proto == NV_ICMP)
		return type == 3 || type == 4 || type == 5 || type == 11 || type == 12;
	if (proto == NV_ICMPV6)
		return type >= 1 && type <= 4;
	return 0;
}

static __always_inline int nv_is_echo(__u8 proto, __u32 type)
{
	if (proto == NV_ICMP)
		return type == 0 || type == 8;
	return proto == NV_ICMPV6 && (type == 128 || type == 129);
}

/* Parse the IP packet at ``l3`` of [data, data_end) into ``p``; -1: not IP (or truncated). */
static __always_inline int nv_parse_ip(void *data, void *data_end, __u32 l3, struct nv_packet *p)
{
	__u64 at = l3;
	asm volatile("%0 &= 0x1ff" : "+r"(at));
	__u8 *ip = (__u8 *)data + at;
	int first = 1;
	__u32 l4;

	__builtin_memset(p, 0, sizeof(*p));
	p->icmp_type = NV_NONE;
	p->icmp_code = NV_NONE;
	p->l3 = l3;
	if ((void *)(ip + 20) > data_end)
		return -1;
	if ((ip[0] >> 4) == 4) {
		struct iphdr *h = (struct iphdr *)ip;
		__u16 frag = bpf_ntohs(h->frag_off);

		p->flow.family = 4;
		p->flow.proto = h->protocol;
		p->flow.src[0] = h->saddr;
		p->flow.dst[0] = h->daddr;
		l4 = l3 + (h->ihl & 15) * 4;
		first = (frag & 0x1fff) == 0;
	} else if ((ip[0] >> 4) == 6) {
		struct ipv6hdr *h = (struct ipv6hdr *)ip;

		if ((void *)(h + 1) > data_end)
			return -1;
		p->flow.family = 6;
		p->flow.proto = h->nexthdr;
		__builtin_memcpy(p->flow.src, &h->saddr, 16);
		__builtin_memcpy(p->flow.dst, &h->daddr, 16);
		l4 = l3 + 40;
		if (h->nexthdr == NV_FRAGMENT) {
			__u8 *fh = (__u8 *)(h + 1);

			if ((void *)(fh + 8) > data_end)
				return -1;
			p->flow.proto = fh[0];
			first = ((fh[2] << 8 | fh[3]) >> 3) == 0;
			l4 += 8;
		}
	} else {
		return -1;
	}
	p->l4 = l4;
	p->first = first;
	if (!first || l4 > 511)
		return 0;
	__u64 off = l4;
	asm volatile("%0 &= 0x1ff" : "+r"(off)); /* a bound the verifier sees on the pointer's offset */
	__u8 *t = (__u8 *)data + off;
	if ((void *)(t + 4) > data_end)
		return 0;
	if (p->flow.proto == NV_TCP || p->flow.proto == NV_UDP) {
		p->has_ports = 1;
		p->flow.src_port = (__u16)(t[0] << 8 | t[1]);
		p->flow.dst_port = (__u16)(t[2] << 8 | t[3]);
	} else if (p->flow.proto == NV_ICMP || p->flow.proto == NV_ICMPV6) {
		p->icmp_type = t[0];
		p->icmp_code = t[1];
		p->icmp_error = nv_is_icmp_error(p->flow.proto, t[0]);
		if (nv_is_echo(p->flow.proto, t[0])) {
			if ((void *)(t + 6) > data_end)
				return 0;
			p->flow.src_port = p->flow.dst_port = (__u16)(t[4] << 8 | t[5]);
		}
	}
	return 0;
}

/* Parse an Ethernet frame; -1: not IPv4/IPv6. */
static __always_inline int nv_parse(void *data, void *data_end, struct nv_packet *p)
{
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return -1;
	if (eth->h_proto != bpf_htons(ETH_P_IP) && eth->h_proto != bpf_htons(ETH_P_IPV6))
		return -1;
	return nv_parse_ip(data, data_end, sizeof(*eth), p);
}

static __always_inline void nv_inverse(const struct nv_flow *f, struct nv_flow *out)
{
	__builtin_memcpy(out->src, f->dst, 16);
	__builtin_memcpy(out->dst, f->src, 16);
	out->src_port = f->dst_port;
	out->dst_port = f->src_port;
	out->family = f->family;
	out->proto = f->proto;
	out->pad[0] = out->pad[1] = 0;
}

#endif
