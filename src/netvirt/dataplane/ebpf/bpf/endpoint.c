// SPDX-License-Identifier: GPL-2.0
/* An endpoint namespace's netfilter, as tc (clsact) programs on each of its interfaces:
 * ``nv_ingress`` is the input chain (and reverse NAT of replies), ``nv_egress`` the output NAT
 * chain (service load balancing) followed by the output chain.
 *
 * Filtering is tuple-space search (dataplane/sim/classify.py's CompiledClassifier): the control
 * plane groups a chain's rules by mask tuple; ``nv_tuples`` lists a chain's tuples ordered by
 * the lowest rule index they hold, ``nv_rules`` maps (tuple, masked packet fields) to the rules
 * of that bucket ordered by index (each with its port ranges when the tuple has range ports).
 * One hash probe per tuple, not one test per rule; the search stops once no remaining tuple can
 * beat the best match. First match wins; no match -> the chain's policy.
 *
 * Connection tracking follows dataplane/sim/netfilter.py: entries for both directions of a
 * connection, each naming the tuple the other direction carries; an entry is made when the first
 * packet is accepted. Replies are ESTABLISHED, originals once a reply passed, ICMP errors quoting
 * a tracked flow RELATED. Services follow Cilium's bpf/lib/lb.h: (VIP, port, proto) -> a service
 * with backend slots, slot -> backend id -> backend, a reverse-NAT entry per service, and client
 * affinity in an LRU map. The backend is chosen by the CRC-32 of the flow modulo the slot count
 * (with affinity: the client address's low bits, nv_affinity_slot) - the simulator's choice, so
 * both pick the same backend.
 *
 * The verdict of the last packet is left in the skb's cb[] (for BPF_PROG_TEST_RUN): cb[0] the
 * rule index (0xffffffff: the policy), cb[1] action | ct state << 8 | nat << 16.
 */
#include "netvirt.h"

#define NV_MAX_TUPLES 128
#define NV_BUCKET_RULES 8
#define NV_CHAIN_INPUT 0
#define NV_CHAIN_OUTPUT 1
#define NV_POLICY_INDEX 0xffffffffu

#define NV_ACCEPT 1
#define NV_DROP 2
#define NV_REJECT 3
#define NV_REJECT_TCP_RESET 4 /* nv_rule.reject: maps.REJECTS */


#define NV_PORT_WILD 0
#define NV_PORT_EXACT 1
#define NV_PORT_RANGE 2

#define NV_OPT_FIB 1 /* after DNAT, route the packet again (FIB lookup, new MACs) */

#define NV_LB_AFFINITY 1

/* the mark of an answer a program sent back (a TCP reset): the other direction's program lets it
 * pass without classifying it, as the kernel's own reject answers bypass the rule set */
#define NV_MARK_ANSWER 0x6e760001u

/* counters (per CPU) */
#define NV_COUNT_ACCEPTED 0
#define NV_COUNT_DROPPED 1
#define NV_COUNT_REJECTED 2
#define NV_COUNT_DNAT 3
#define NV_COUNT_REVERSE_NAT 4
#define NV_COUNT_LOGGED 5
#define NV_COUNTERS 8

struct nv_chain {
	__u32 tuples;
	__u32 flags;
	__u8 active;
	__u8 policy; /* NV_ACCEPT or NV_DROP */
	__u8 pad[2];
};

struct nv_tuple {
	struct nv_key mask; /* the fields (and prefix bits) this tuple matches exactly */
	__u32 min_index;
	__u8 src_port;      /* NV_PORT_*: how the tuple's rules match ports */
	__u8 dst_port;
	__u8 pad[2];
};

struct nv_rule {
	__u32 index;
	__u32 mark;
	__u16 src_lo, src_hi, dst_lo, dst_hi;
	__u8 action;
	__u8 reject;
	__u8 log;
	__u8 set_mark;
};

struct nv_bucket {
	__u32 count;
	struct nv_rule rules[NV_BUCKET_RULES];
};

struct nv_ct {
	struct nv_flow other; /* the tuple the other direction of the connection carries */
	__u16 rev_nat_index;  /* on reply entries of load-balanced connections */
	__u8 is_reply;
	__u8 seen_reply;
};

struct nv_log_record {
	__u32 chain;
	__u32 index;
	struct nv_flow flow;
	__u32 action;
};

/* Cilium lb.h: lb4_key/lb6_key, lb4_service, lb4_backend, lb4_reverse_nat, lb_affinity_* */
struct lb_key {
	__u32 address[4];
	__u16 dport;
	__u16 backend_slot; /* 0: the service itself */
	__u8 proto;
	__u8 family;
	__u8 pad[2];
};

struct lb_service {
	__u32 backend_id;   /* slot 0: the affinity timeout in seconds */
	__u16 count;        /* slot 0: how many backend slots */
	__u16 rev_nat_index;
	__u8 flags;         /* NV_LB_AFFINITY */
	__u8 pad[3];
};

struct lb_backend {
	__u32 address[4];
	__u16 port;
	__u8 family;
	__u8 pad;
};

struct lb_reverse_nat {
	__u32 address[4];
	__u16 port;
	__u8 family;
	__u8 pad;
};

struct lb_affinity_key {
	__u32 client[4];
	__u16 rev_nat_id;
	__u8 family;
	__u8 pad;
};

struct lb_affinity_val {
	__u64 last_used;
	__u32 backend_id;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct nv_chain);
} nv_chains SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * NV_MAX_TUPLES);
	__type(key, __u32);
	__type(value, struct nv_tuple);
} nv_tuples SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct nv_key);
	__type(value, struct nv_bucket);
} nv_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct nv_flow);
	__type(value, struct nv_ct);
} nv_conntrack SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 16);
} nv_log SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NV_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} nv_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lb_key);
	__type(value, struct lb_service);
} nv_lb_services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct lb_backend);
} nv_lb_backends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u16);
	__type(value, struct lb_reverse_nat);
} nv_lb_reverse_nat SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct lb_affinity_key);
	__type(value, struct lb_affinity_val);
} nv_lb_affinity SEC(".maps");

/* Per-CPU scratch space: a program's working state is larger than the 512-byte BPF stack. */
struct nv_scratch {
	struct nv_packet p;
	struct nv_packet quoted;
	struct nv_flow original;
	struct nv_flow reply;
	struct nv_ct entry;
	struct nv_ct copy;
	struct lb_service service;
	struct lb_backend target;
	struct lb_affinity_key akey;
	struct lb_affinity_val fresh;
	__u8 answer[80];       /* nv_reset's packet */
	struct nv_key key;     /* nv_classify's input: the packet's fields */
	struct nv_rule found;  /* and its output: the first matching rule, if best is not the policy */
	__u32 best;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct nv_scratch);
} nv_scratch SEC(".maps");

/* the service addresses (lb_key with only address and family set), for ARP */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lb_key);
	__type(value, __u8);
} nv_lb_vips SEC(".maps");

static __always_inline void nv_count(__u32 which)
{
	__u64 *value = bpf_map_lookup_elem(&nv_counters, &which);

	if (value)
		*value += 1;
}

/* --- classification -------------------------------------------------------------------------- */

struct nv_search {
	struct nv_key packet;
	struct nv_key key;
	__u32 chain;
	__u32 best;
	struct nv_rule found;
};

static long nv_visit(__u32 i, void *data)
{
	struct nv_search *s = data;
	__u32 slot = s->chain * NV_MAX_TUPLES + i;
	struct nv_tuple *t = bpf_map_lookup_elem(&nv_tuples, &slot);
	struct nv_key *k = &s->key;
	struct nv_bucket *b;
	__u32 w, limit, count, hit = NV_BUCKET_RULES;

	if (!t || t->min_index >= s->best)
		return 1;
	{
		__u32 *out = (__u32 *)k, *in = (__u32 *)&s->packet, *mask = (__u32 *)&t->mask;

#pragma unroll
		for (w = 0; w < sizeof(*k) / 4; w++)
			out[w] = in[w] & mask[w];
	}
	k->tuple = slot;
	b = bpf_map_lookup_elem(&nv_rules, k);
	if (!b)
		return 0;
	limit = s->best;
	count = b->count;
	for (w = 0; w < NV_BUCKET_RULES; w++) {
		struct nv_rule *r = &b->rules[w];
		__u32 sp = s->packet.src_port, dp = s->packet.dst_port;

		if (w >= count || r->index >= limit)
			break;
		if (t->src_port == NV_PORT_RANGE && (sp < r->src_lo || sp > r->src_hi))
			continue;
		if (t->dst_port == NV_PORT_RANGE && (dp < r->dst_lo || dp > r->dst_hi))
			continue;
		hit = w;
		break;
	}
	if (hit < NV_BUCKET_RULES) {
		s->best = b->rules[hit].index;
		__builtin_memcpy(&s->found, &b->rules[hit], sizeof(s->found));
	}
	return 0;
}

/* Tuple-space search of chain ``chain_id`` for the packet in the scratch ``key``; the result in
 * the scratch ``best`` / ``found``. A global function: the verifier checks it once, not once per
 * path of its caller. */
__noinline int nv_classify(__u32 chain_id)
{
	__u32 zero = 0;
	struct nv_scratch *w = bpf_map_lookup_elem(&nv_scratch, &zero);
	struct nv_chain *chain = bpf_map_lookup_elem(&nv_chains, &chain_id);
	struct nv_search s = {};
	__u32 tuples;

	if (!w || !chain)
		return 0;
	__builtin_memcpy(&s.packet, &w->key, sizeof(s.packet));
	s.chain = chain_id & 1;
	s.best = NV_POLICY_INDEX;
	tuples = chain->tuples < NV_MAX_TUPLES ? chain->tuples : NV_MAX_TUPLES;
	bpf_loop(tuples, nv_visit, &s, 0);
	w->best = s.best;
	__builtin_memcpy(&w->found, &s.found, sizeof(s.found));
	return 0;
}

/* --- NAT ------------------------------------------------------------------------------------- */

struct nv_crc {
	__u8 bytes[64];
	__u32 length;
	__u32 crc;
};

static long nv_crc_step(__u32 i, void *data)
{
	struct nv_crc *c = data;

	__u64 at = i;

	if (i >= c->length)
		return 1;
	asm volatile("%0 &= 63" : "+r"(at));
	c->crc ^= c->bytes[at];
#pragma unroll
	for (int bit = 0; bit < 8; bit++)
		c->crc = (c->crc >> 1) ^ (0xedb88320u & -(c->crc & 1));
	return 0;
}

/* zlib's crc32 of the flow (the simulator's backend choice): the client address with affinity,
 * else source, destination, protocol and both ports (network order). */
static __always_inline __u32 nv_flow_hash(const struct nv_flow *f, int affinity)
{
	struct nv_crc c = {.crc = 0xffffffff};
	__u32 size = f->family == 4 ? 4 : 16;

	__builtin_memcpy(c.bytes, f->src, 16);
	c.length = size;
	if (!affinity) {
		if (size == 4) {
			__builtin_memcpy(c.bytes + 4, f->dst, 4);
			c.bytes[8] = f->proto;
			c.bytes[9] = f->src_port >> 8;
			c.bytes[10] = f->src_port & 0xff;
			c.bytes[11] = f->dst_port >> 8;
			c.bytes[12] = f->dst_port & 0xff;
			c.length = 13;
		} else {
			__builtin_memcpy(c.bytes + 16, f->dst, 16);
			c.bytes[32] = f->proto;
			c.bytes[33] = f->src_port >> 8;
			c.bytes[34] = f->src_port & 0xff;
			c.bytes[35] = f->dst_port >> 8;
			c.bytes[36] = f->dst_port & 0xff;
			c.length = 37;
		}
	}
	bpf_loop(40, nv_crc_step, &c, 0);
	return ~c.crc;
}

/* The L4 checksum's offset, or 0 when the packet's transport has none the addresses enter. */
static __always_inline __u32 nv_l4_csum(const struct nv_packet *p, __u8 *is_udp)
{
	*is_udp = 0;
	if (!p->first)
		return 0;
	if (p->flow.proto == NV_TCP)
		return p->l4 + 16;
	if (p->flow.proto == NV_UDP) {
		*is_udp = 1;
		return p->l4 + 6;
	}
	if (p->flow.proto == NV_ICMPV6 && p->flow.family == 6)
		return p->l4 + 2;
	return 0;
}

/* Rewrite the destination (``dst``) or source address and port of the packet, checksums updated;
 * ``p`` follows. Returns -1 when the skb cannot be written. */
static __always_inline int nv_rewrite(struct __sk_buff *skb, struct nv_packet *p, int dst,
				      const __u32 *address, __u16 port)
{
	__u32 *old = dst ? p->flow.dst : p->flow.src;
	__u8 is_udp;
	__u32 csum = nv_l4_csum(p, &is_udp);
	__u64 flags = is_udp ? BPF_F_MARK_MANGLED_0 : 0;

	if (p->flow.family == 4) {
		__u32 at = p->l3 + (dst ? 16 : 12);

		if (old[0] != address[0]) {
			if (csum && bpf_l4_csum_replace(skb, csum, old[0], address[0], flags | BPF_F_PSEUDO_HDR | 4))
				return -1;
			if (bpf_l3_csum_replace(skb, p->l3 + 10, old[0], address[0], 4))
				return -1;
			if (bpf_skb_store_bytes(skb, at, address, 4, 0))
				return -1;
			old[0] = address[0];
		}
	} else {
		__u32 at = p->l3 + (dst ? 24 : 8);
		__s64 diff = bpf_csum_diff(old, 16, (__u32 *)address, 16, 0);

		if (old[0] != address[0] || old[1] != address[1] || old[2] != address[2] || old[3] != address[3]) {
			if (csum && bpf_l4_csum_replace(skb, csum, 0, diff, flags | BPF_F_PSEUDO_HDR))
				return -1;
			if (bpf_skb_store_bytes(skb, at, address, 16, 0))
				return -1;
			__builtin_memcpy(old, address, 16);
		}
	}
	if (p->has_ports) {
		__u16 *old_port = dst ? &p->flow.dst_port : &p->flow.src_port;

		if (*old_port != port) {
			__u16 from = bpf_htons(*old_port), to = bpf_htons(port);

			if (csum && bpf_l4_csum_replace(skb, csum, from, to, flags | 2))
				return -1;
			if (bpf_skb_store_bytes(skb, p->l4 + (dst ? 2 : 0), &to, 2, 0))
				return -1;
			*old_port = port;
		}
	}
	return 0;
}

/* Client-IP affinity's slot (graph Dnat.affinity_target, as the simulator and the nftables and
 * iptables rules pick): the client address's low bits, in buckets (a power of two, at least 4 per
 * backend, at most 256), a bucket per backend in turn. */
static __always_inline __u32 nv_affinity_slot(const struct nv_flow *f, __u32 count)
{
	const __u8 *address = (const __u8 *)f->src; /* network order: the last byte is the lowest */
	__u32 buckets = 1;

#pragma unroll
	for (int i = 0; i < 8; i++)
		if (buckets < 4 * count)
			buckets <<= 1;
	return (address[f->family == 4 ? 3 : 15] & (buckets - 1)) % count;
}

/* The backend of a service for a new flow (Cilium lb4_local: affinity first, then a slot). */
static __always_inline struct lb_backend *nv_lb_select(struct nv_scratch *w, struct lb_service *svc,
							struct lb_key *key, __u32 *backend_id)
{
	struct nv_packet *p = &w->p;
	struct lb_affinity_key *akey = &w->akey;
	struct lb_affinity_val *aval, *fresh = &w->fresh;
	struct lb_service *slot;
	struct lb_backend *backend;
	int affinity = svc->flags & NV_LB_AFFINITY;
	__u64 now = bpf_ktime_get_ns();

	__builtin_memset(akey, 0, sizeof(*akey));
	__builtin_memset(fresh, 0, sizeof(*fresh));
	if (affinity) {
		__builtin_memcpy(akey->client, p->flow.src, 16);
		akey->rev_nat_id = svc->rev_nat_index;
		akey->family = p->flow.family;
		aval = bpf_map_lookup_elem(&nv_lb_affinity, akey);
		if (aval && now - aval->last_used <= (__u64)svc->backend_id * 1000000000ull) {
			backend = bpf_map_lookup_elem(&nv_lb_backends, &aval->backend_id);
			if (backend) {
				*backend_id = aval->backend_id;
				aval->last_used = now;
				return backend;
			}
		}
	}
	if (!svc->count)
		return 0;
	key->backend_slot = (affinity ? nv_affinity_slot(&p->flow, svc->count) : nv_flow_hash(&p->flow, 0) % svc->count) + 1;
	slot = bpf_map_lookup_elem(&nv_lb_services, key);
	if (!slot)
		return 0;
	*backend_id = slot->backend_id;
	backend = bpf_map_lookup_elem(&nv_lb_backends, backend_id);
	if (backend && affinity) {
		fresh->last_used = now;
		fresh->backend_id = *backend_id;
		bpf_map_update_elem(&nv_lb_affinity, akey, fresh, BPF_ANY);
	}
	return backend;
}

/* Route a packet again after DNAT, as the kernel re-routes a locally generated packet after the
 * output NAT hook: bpf_redirect_neigh looks the new destination up in this namespace's routes and
 * neighbours (resolving the next hop if needed) and transmits on the interface. (bpf_fib_lookup
 * would refuse: endpoint namespaces do not forward.) The packet comes through nv_egress again,
 * marked, and passes untouched. */
static __always_inline int nv_reroute(struct __sk_buff *skb)
{
	skb->mark = NV_MARK_ANSWER;
	return bpf_redirect_neigh(skb->ifindex, 0, 0, 0);
}

/* A client load-balanced to itself (the backend is this namespace's own address). */
static __always_inline int nv_hairpin(const struct nv_packet *p)
{
	return p->flow.src[0] == p->flow.dst[0] && p->flow.src[1] == p->flow.dst[1] && p->flow.src[2] == p->flow.dst[2] &&
	       p->flow.src[3] == p->flow.dst[3];
}

/* Deliver a hairpin packet as the kernel delivers a locally addressed one: through the input chain
 * (arriving on lo) into this namespace's stack via lo. The answer leaves by lo too, where
 * nv_egress (attached to lo's egress) translates it back to the VIP. */
static __always_inline int nv_loop_back(struct __sk_buff *skb, struct nv_scratch *w)
{
	__u32 input = NV_CHAIN_INPUT;
	struct nv_chain *chain = bpf_map_lookup_elem(&nv_chains, &input);

	if (chain && chain->active) {
		w->key.in_ifindex = 1; /* lo */
		w->key.out_ifindex = 0;
		w->best = NV_POLICY_INDEX;
		nv_classify(NV_CHAIN_INPUT);
		if ((w->best == NV_POLICY_INDEX ? chain->policy : w->found.action) != NV_ACCEPT) {
			nv_count(NV_COUNT_DROPPED);
			return TC_ACT_SHOT;
		}
	}
	{
		__u8 zero[12] = {};

		bpf_skb_store_bytes(skb, 0, zero, sizeof(zero), 0); /* lo's (null) MACs: addressed to this host */
	}
	skb->mark = NV_MARK_ANSWER;
	return bpf_redirect(1, BPF_F_INGRESS);
}

/* --- ARP for service VIPs ---------------------------------------------------------------------- */

/* The MAC this program answers ARP for a VIP with ("nv" 00:01, locally administered): the
 * namespace's stack then sends the VIP's packets out, where nv_egress translates and routes them
 * (a VIP route is on-link; the kernel resolves the next hop before tc egress runs). */
static const __u8 nv_service_mac[6] = {0x02, 0x6e, 0x76, 0x00, 0x00, 0x01};

struct nv_arp {
	__be16 hardware;
	__be16 protocol;
	__u8 hardware_length;
	__u8 protocol_length;
	__be16 operation;
	__u8 sender_mac[6];
	__be32 sender_ip;
	__u8 target_mac[6];
	__be32 target_ip;
} __attribute__((packed));

/* Answer an ARP request for a service VIP back into this namespace's stack; TC_ACT_OK for any
 * other ARP. */
static __always_inline int nv_vip_arp(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct nv_arp *arp = (void *)(eth + 1);
	struct lb_key key = {};
	__u8 mac[6];
	__be32 ip;

	if ((void *)(arp + 1) > end || arp->operation != bpf_htons(1) || arp->protocol != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	key.address[0] = arp->target_ip;
	key.family = 4;
	if (!bpf_map_lookup_elem(&nv_lb_vips, &key))
		return TC_ACT_OK;
	__builtin_memcpy(mac, arp->sender_mac, 6);
	ip = arp->sender_ip;
	__builtin_memcpy(eth->h_dest, mac, 6);
	__builtin_memcpy(eth->h_source, nv_service_mac, 6);
	arp->operation = bpf_htons(2);
	arp->sender_ip = arp->target_ip;
	__builtin_memcpy(arp->sender_mac, nv_service_mac, 6);
	arp->target_ip = ip;
	__builtin_memcpy(arp->target_mac, mac, 6);
	skb->mark = NV_MARK_ANSWER;
	return bpf_redirect(skb->ifindex, BPF_F_INGRESS);
}

/* --- reject --------------------------------------------------------------------------------- */

static __always_inline __u32 nv_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return ~sum & 0xffff;
}

static __always_inline __u32 nv_sum16(const __u8 *bytes, __u32 length)
{
	__u32 sum = 0;

	for (__u32 i = 0; i < length; i += 2)
		sum += (__u32)bytes[i] << 8 | bytes[i + 1];
	return sum;
}

/* Turn a rejected TCP segment into the RST|ACK answering it (RFC 9293 3.10.7.1; the simulator's
 * packets.tcp_reset) and send it back: out of the interface it came in by (input chain), or up
 * this namespace's stack (output chain). Anything else rejected (``reject`` with an ICMP error)
 * is dropped. */
static __always_inline int nv_reset(struct __sk_buff *skb, struct nv_scratch *w, __u32 chain_id)
{
	struct nv_packet *p = &w->p;
	__u8 *out = w->answer, tcp[20], macs[12];
	__u32 l3 = p->l3, ip_length = 0, seq, ack, size, sum, at;
	__u16 word;
	int v4 = p->flow.family == 4;

	if (w->found.reject != NV_REJECT_TCP_RESET || !p->has_ports || p->flow.proto != NV_TCP || l3 != ETH_HLEN)
		return TC_ACT_SHOT;
	if (bpf_skb_load_bytes(skb, p->l4, tcp, sizeof(tcp)) || bpf_skb_load_bytes(skb, 0, macs, sizeof(macs)))
		return TC_ACT_SHOT;
	if (bpf_skb_load_bytes(skb, l3 + (v4 ? 2 : 4), &word, 2))
		return TC_ACT_SHOT;
	ip_length = bpf_ntohs(word) + (v4 ? 0 : 40);
	seq = (__u32)tcp[4] << 24 | (__u32)tcp[5] << 16 | (__u32)tcp[6] << 8 | tcp[7];
	ack = seq + ip_length - (p->l4 - l3) - ((tcp[12] >> 4) << 2) + !!(tcp[13] & 0x02) + !!(tcp[13] & 0x01);

	__builtin_memset(out, 0, sizeof(w->answer));
	__builtin_memcpy(out, macs + 6, 6);
	__builtin_memcpy(out + 6, macs, 6);
	out[12] = v4 ? 0x08 : 0x86;
	out[13] = v4 ? 0x00 : 0xdd;
	at = ETH_HLEN + (v4 ? 20 : 40);
	if (v4) {
		__u8 *ip = out + ETH_HLEN;

		ip[0] = 0x45;
		ip[3] = 40;
		ip[6] = 0x40; /* don't fragment */
		ip[8] = 64;
		ip[9] = NV_TCP;
		__builtin_memcpy(ip + 12, p->flow.dst, 4);
		__builtin_memcpy(ip + 16, p->flow.src, 4);
		sum = nv_fold(nv_sum16(ip, 20));
		ip[10] = sum >> 8;
		ip[11] = sum & 0xff;
	} else {
		__u8 *ip = out + ETH_HLEN;

		ip[0] = 0x60;
		ip[5] = 20;
		ip[6] = NV_TCP;
		ip[7] = 64;
		__builtin_memcpy(ip + 8, p->flow.dst, 16);
		__builtin_memcpy(ip + 24, p->flow.src, 16);
	}
	__u8 *rst = out + (v4 ? 34 : 54);

	rst[0] = tcp[2];
	rst[1] = tcp[3];
	rst[2] = tcp[0];
	rst[3] = tcp[1];
	rst[8] = ack >> 24;
	rst[9] = ack >> 16;
	rst[10] = ack >> 8;
	rst[11] = ack;
	rst[12] = 5 << 4;
	rst[13] = 0x14; /* RST | ACK */
	/* pseudo header: addresses, protocol, length */
	sum = nv_sum16(out + ETH_HLEN + (v4 ? 12 : 8), v4 ? 8 : 32) + NV_TCP + 20 + nv_sum16(rst, 20);
	sum = nv_fold(sum);
	rst[16] = sum >> 8;
	rst[17] = sum & 0xff;

	size = at + 20;
	if (bpf_skb_change_tail(skb, size, 0))
		return TC_ACT_SHOT;
	if (bpf_skb_store_bytes(skb, 0, out, v4 ? 54 : 74, 0))
		return TC_ACT_SHOT;
	skb->mark = NV_MARK_ANSWER;
	return bpf_redirect(skb->ifindex, chain_id == NV_CHAIN_INPUT ? 0 : BPF_F_INGRESS);
}

/* --- the programs ---------------------------------------------------------------------------- */

/* The tracked entry of an ICMP error's quoted datagram (RELATED), or 0. */
static __always_inline struct nv_ct *nv_related(struct __sk_buff *skb, struct nv_scratch *w)
{
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	__u32 at = w->p.l4 + 8;

	if (at > 200 || nv_parse_ip(data, end, at, &w->quoted) < 0)
		return 0;
	return bpf_map_lookup_elem(&nv_conntrack, &w->quoted.flow);
}

static __always_inline int nv_endpoint(struct __sk_buff *skb, __u32 chain_id)
{
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	__u32 zero = 0;
	struct nv_scratch *w = bpf_map_lookup_elem(&nv_scratch, &zero);
	struct nv_ct *ct;
	struct nv_chain *chain;
	__u8 state = NV_CT_NEW, related = 0, is_reply = 0, nat = 0;
	__u16 rev_nat = 0;
	int verdict = TC_ACT_OK, reroute = 0;

	if (skb->mark == NV_MARK_ANSWER) {
		skb->mark = 0;
		return TC_ACT_OK;
	}
	if (!w || nv_parse(data, end, &w->p) < 0)
		return TC_ACT_OK;
	chain = bpf_map_lookup_elem(&nv_chains, &chain_id);
	if (!chain)
		return TC_ACT_OK;
	__builtin_memcpy(&w->original, &w->p.flow, sizeof(struct nv_flow));

	ct = bpf_map_lookup_elem(&nv_conntrack, &w->p.flow);
	if (ct) {
		is_reply = ct->is_reply;
		state = (is_reply || ct->seen_reply) ? NV_CT_ESTABLISHED : NV_CT_NEW;
	} else if (w->p.icmp_error) {
		ct = nv_related(skb, w);
		if (ct) {
			related = 1;
			state = NV_CT_RELATED;
		}
	}

	/* NAT: from the entry for a tracked flow, from the service map for a new one */
	if (ct && !related) {
		struct nv_ct *copy = &w->copy;

		__builtin_memcpy(copy, ct, sizeof(*copy));
		if (!is_reply) {
			int moved = copy->other.src[0] != w->p.flow.dst[0] || copy->other.src[1] != w->p.flow.dst[1] ||
				    copy->other.src[2] != w->p.flow.dst[2] || copy->other.src[3] != w->p.flow.dst[3] ||
				    (w->p.has_ports && copy->other.src_port != w->p.flow.dst_port);

			nat = moved && nv_rewrite(skb, &w->p, 1, copy->other.src, copy->other.src_port) == 0;
			reroute = nat && chain_id == NV_CHAIN_OUTPUT && (chain->flags & NV_OPT_FIB);
		} else if (copy->rev_nat_index) {
			struct lb_reverse_nat *rnat = bpf_map_lookup_elem(&nv_lb_reverse_nat, &copy->rev_nat_index);

			if (rnat && nv_rewrite(skb, &w->p, 0, rnat->address, rnat->port) == 0) {
				nat = 1;
				nv_count(NV_COUNT_REVERSE_NAT);
			}
		}
	} else if (!ct && chain_id == NV_CHAIN_OUTPUT && w->p.has_ports) {
		struct lb_key key = {};
		struct lb_service *svc;

		__builtin_memcpy(key.address, w->p.flow.dst, 16);
		key.dport = w->p.flow.dst_port;
		key.proto = w->p.flow.proto;
		key.family = w->p.flow.family;
		svc = bpf_map_lookup_elem(&nv_lb_services, &key);
		if (svc) {
			struct lb_service *service = &w->service;
			struct lb_backend *backend;
			__u32 backend_id = 0;

			__builtin_memcpy(service, svc, sizeof(*service));
			backend = nv_lb_select(w, service, &key, &backend_id);
			if (backend) {
				struct lb_backend *target = &w->target;

				__builtin_memcpy(target, backend, sizeof(*target));
				if (nv_rewrite(skb, &w->p, 1, target->address, target->port ? target->port : w->p.flow.dst_port) == 0) {
					nat = 1;
					rev_nat = service->rev_nat_index;
					reroute = chain->flags & NV_OPT_FIB;
					nv_count(NV_COUNT_DNAT);
				}
			}
		}
	}

	/* filter */
	w->best = NV_POLICY_INDEX;
	if (chain->active) {
		struct nv_key *k = &w->key;

		k->tuple = 0xffffffff;
		__builtin_memcpy(k->src, w->p.flow.src, 16);
		__builtin_memcpy(k->dst, w->p.flow.dst, 16);
		k->src_port = w->p.has_ports ? w->p.flow.src_port : NV_NONE;
		k->dst_port = w->p.has_ports ? w->p.flow.dst_port : NV_NONE;
		k->icmp_type = w->p.icmp_type;
		k->icmp_code = w->p.icmp_code;
		k->in_ifindex = chain_id == NV_CHAIN_INPUT ? skb->ifindex : 0;
		k->out_ifindex = chain_id == NV_CHAIN_OUTPUT ? skb->ifindex : 0;
		k->mark = skb->mark;
		k->family = w->p.flow.family;
		k->proto = w->p.flow.proto;
		k->ct_state = state;
		k->pad = 0;
		nv_classify(chain_id);
	}
	__u8 action = w->best == NV_POLICY_INDEX ? (chain->active ? chain->policy : NV_ACCEPT) : w->found.action;

	if (w->best != NV_POLICY_INDEX) {
		if (w->found.set_mark)
			skb->mark = w->found.mark;
		if (w->found.log) {
			struct nv_log_record *record = bpf_ringbuf_reserve(&nv_log, sizeof(*record), 0);

			if (record) {
				record->chain = chain_id;
				record->index = w->best;
				__builtin_memcpy(&record->flow, &w->p.flow, sizeof(record->flow));
				record->action = action;
				bpf_ringbuf_submit(record, 0);
				nv_count(NV_COUNT_LOGGED);
			}
		}
	}
	skb->cb[0] = w->best;
	skb->cb[1] = action | (__u32)state << 8 | (__u32)nat << 16;

	if (action == NV_DROP) {
		nv_count(NV_COUNT_DROPPED);
		return TC_ACT_SHOT;
	}
	if (action == NV_REJECT) {
		nv_count(NV_COUNT_REJECTED);
		return nv_reset(skb, w, chain_id);
	}
	nv_count(NV_COUNT_ACCEPTED);

	/* confirm: a new connection gets its two entries; a reply marks its connection answered */
	if (!ct) {
		__builtin_memset(&w->entry, 0, sizeof(w->entry));
		nv_inverse(&w->p.flow, &w->reply);
		__builtin_memcpy(&w->entry.other, &w->reply, sizeof(struct nv_flow));
		bpf_map_update_elem(&nv_conntrack, &w->original, &w->entry, BPF_ANY);
		__builtin_memcpy(&w->entry.other, &w->original, sizeof(struct nv_flow));
		w->entry.is_reply = 1;
		w->entry.rev_nat_index = rev_nat;
		bpf_map_update_elem(&nv_conntrack, &w->reply, &w->entry, BPF_ANY);
	} else if (is_reply && !related) {
		struct nv_ct *forward = bpf_map_lookup_elem(&nv_conntrack, &ct->other);

		if (forward)
			forward->seen_reply = 1;
	}
	if (reroute && nv_hairpin(&w->p))
		return nv_loop_back(skb, w);
	if (reroute)
		verdict = nv_reroute(skb);
	return verdict;
}

SEC("tc")
int nv_ingress(struct __sk_buff *skb)
{
	return nv_endpoint(skb, NV_CHAIN_INPUT);
}

SEC("tc")
int nv_egress(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) <= end && eth->h_proto == bpf_htons(ETH_P_ARP) && skb->mark != NV_MARK_ANSWER)
		return nv_vip_arp(skb);
	return nv_endpoint(skb, NV_CHAIN_OUTPUT);
}

char LICENSE[] SEC("license") = "GPL";
