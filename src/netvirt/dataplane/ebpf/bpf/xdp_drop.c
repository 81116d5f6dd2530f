// SPDX-License-Identifier: GPL-2.0
/* A host's drop list (spec ``hosts[].drop_from``) on its underlay NIC, at the XDP hook: packets
 * from a listed prefix are dropped in the driver, before the kernel allocates a socket buffer.
 *
 * ``nv_drop4`` / ``nv_drop6`` are LPM tries: source prefix -> the entry's position in the list.
 * ``nv_drop_counters`` counts, per CPU, the packets and bytes each entry dropped; the slot after
 * the last entry (NV_DROP_MAX) counts what passed.
 */
#include "netvirt.h"

#define NV_DROP_MAX 1024

struct nv_lpm4 {
	__u32 prefixlen;
	__u32 address;
};

struct nv_lpm6 {
	__u32 prefixlen;
	__u32 address[4];
};

struct nv_drop_counter {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, NV_DROP_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct nv_lpm4);
	__type(value, __u32);
} nv_drop4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, NV_DROP_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct nv_lpm6);
	__type(value, __u32);
} nv_drop6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NV_DROP_MAX + 1);
	__type(key, __u32);
	__type(value, struct nv_drop_counter);
} nv_drop_counters SEC(".maps");

SEC("xdp")
int nv_xdp_drop(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u32 *entry = 0, pass = NV_DROP_MAX;
	struct nv_drop_counter *counter;

	if ((void *)(eth + 1) > end)
		return XDP_PASS;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		struct nv_lpm4 key = {.prefixlen = 32};

		if ((void *)(ip + 1) > end)
			return XDP_PASS;
		key.address = ip->saddr;
		entry = bpf_map_lookup_elem(&nv_drop4, &key);
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip = (void *)(eth + 1);
		struct nv_lpm6 key = {.prefixlen = 128};

		if ((void *)(ip + 1) > end)
			return XDP_PASS;
		__builtin_memcpy(key.address, &ip->saddr, 16);
		entry = bpf_map_lookup_elem(&nv_drop6, &key);
	}
	counter = bpf_map_lookup_elem(&nv_drop_counters, entry ? entry : &pass);
	if (counter) {
		counter->packets += 1;
		counter->bytes += (__u64)(end - data);
	}
	return entry ? XDP_DROP : XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
