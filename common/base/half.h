/* half.h - IEEE binary16 and bfloat16 conversion on the CPU.
 *
 * Round-to-nearest-even, as numpy, PyTorch and CUDA's __float2half_rn do, so a
 * float16 written by the cache writer equals torch.Tensor.half() bit for bit. */
#ifndef KDC_HALF_H
#define KDC_HALF_H

#include <stddef.h>
#include <stdint.h>

uint16_t kdc_f32_to_f16(float f);
float kdc_f16_to_f32(uint16_t h);
uint16_t kdc_f32_to_bf16(float f);
float kdc_bf16_to_f32(uint16_t h);

void kdc_f32_to_f16_array(const float *src, uint16_t *dst, size_t n);
void kdc_f16_to_f32_array(const uint16_t *src, float *dst, size_t n);

#endif
