/* Plain C entry points over ipsec-mb's GCM direct API, whose entry points are function
 * pointers in IMB_MGR reached through macros that Rust cannot call. Nothing else lives here. */
#define _DEFAULT_SOURCE /* explicit_bzero */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <intel-ipsec-mb.h>

/* NULL when the manager cannot be set up for this CPU: its GCM entry points would be unset. */
IMB_MGR *fg_mgr_new(void)
{
        IMB_MGR *m = alloc_mb_mgr(0);
        if (m == NULL)
                return NULL;
        init_mb_mgr_auto(m, NULL);
        if (imb_get_errno(m) != 0 || m->gcm128_pre == NULL || m->gcm256_pre == NULL ||
            m->gcm128_enc == NULL || m->gcm256_enc == NULL || m->gcm128_dec == NULL ||
            m->gcm256_dec == NULL) {
                free_mb_mgr(m);
                return NULL;
        }
        return m;
}

void fg_mgr_free(IMB_MGR *m) { free_mb_mgr(m); }

/* Expanded AES key and GHASH key powers; 64-byte aligned as the header asks. */
struct gcm_key_data *fg_gcm_key_new(IMB_MGR *m, const uint8_t *key, int key_len)
{
        struct gcm_key_data *k = aligned_alloc(64, (sizeof(*k) + 63) / 64 * 64);
        if (k == NULL)
                return NULL;
        if (key_len == 16)
                IMB_AES128_GCM_PRE(m, key, k);
        else if (key_len == 32)
                IMB_AES256_GCM_PRE(m, key, k);
        else {
                free(k);
                return NULL;
        }
        return k;
}

void fg_gcm_key_free(struct gcm_key_data *k)
{
        if (k != NULL) {
                /* Not memset: a store just before free may be optimised away. */
                explicit_bzero(k, sizeof(*k));
                free(k);
        }
}

void fg_gcm_enc(IMB_MGR *m, const struct gcm_key_data *k, int key_len, uint8_t *dst,
                const uint8_t *src, uint64_t len, const uint8_t *iv, const uint8_t *aad,
                uint64_t aad_len, uint8_t *tag)
{
        struct gcm_context_data ctx;
        if (key_len == 16)
                IMB_AES128_GCM_ENC(m, k, &ctx, dst, src, len, iv, aad, aad_len, tag, 16);
        else
                IMB_AES256_GCM_ENC(m, k, &ctx, dst, src, len, iv, aad, aad_len, tag, 16);
}

void fg_gcm_dec(IMB_MGR *m, const struct gcm_key_data *k, int key_len, uint8_t *dst,
                const uint8_t *src, uint64_t len, const uint8_t *iv, const uint8_t *aad,
                uint64_t aad_len, uint8_t *tag)
{
        struct gcm_context_data ctx;
        if (key_len == 16)
                IMB_AES128_GCM_DEC(m, k, &ctx, dst, src, len, iv, aad, aad_len, tag, 16);
        else
                IMB_AES256_GCM_DEC(m, k, &ctx, dst, src, len, iv, aad, aad_len, tag, 16);
}
