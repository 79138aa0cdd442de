/* What ferrogate uses from DPDK. Static inline functions listed here get real symbols through
 * bindgen's wrap_static_fns; rte_errno is a per-lcore macro, so a small inline accessor
 * exposes it. */
#include <rte_config.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_launch.h>
#include <rte_cycles.h>
#include <rte_mempool.h>
#include <rte_mbuf.h>
#include <rte_ethdev.h>
#include <rte_ring.h>
#include <rte_malloc.h>

static inline int fg_rte_errno(void) { return rte_errno; }
