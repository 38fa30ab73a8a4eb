/* guidance.h — classifier-free guidance (StableDiffusionPipeline semantics).
 *
 * The pipeline runs the UNet on cat([uncond, cond]) and combines the halves:
 *     e = e_u + g * (e_c - e_u)                       (guidance_scale g > 1)
 * and, if guidance_rescale r > 0 (Lin et al. 2023, §3.4; rescale_noise_cfg):
 *     e = r * e * (std(e_c) / std(e)) + (1 - r) * e
 * with std per batch item over C,H,W, unbiased (torch.std). fp32, in torch's
 * operation order.
 */
#ifndef SD_SAMPLE_GUIDANCE_H
#define SD_SAMPLE_GUIDANCE_H

#include <stddef.h>

/* out[k] = e_u[k] + g * (e_c[k] - e_u[k]) for k < n; out may alias e_u or e_c. */
void sd_cfg_combine(const float *e_uncond, const float *e_cond, float g, float *out, size_t n);

/* rescale_noise_cfg in place on e_cfg [batch, per_item], with e_cond the
 * conditional prediction of the same shape. per_item >= 2. r (a double, as
 * the Python float: 1 - r is rounded once) = 0 leaves
 * e_cfg unchanged (the pipeline skips the call then). */
void sd_cfg_rescale(float *e_cfg, const float *e_cond, double r, int batch, size_t per_item);

/* torch.std of x[0..n) (unbiased, computed in double, rounded to fp32) */
float sd_std_unbiased(const float *x, size_t n);

#endif
