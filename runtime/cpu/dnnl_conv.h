/* 2-D convolution on oneDNN's primitive in NHWC (brgconv: ~300 GFLOP/s on
 * this AVX-512 machine against ~160 for NCHW im2col + sgemm), or on
 * onnxtl's Winograd (winograd.h) for the 3x3 stride-1 ones it speeds up. */
#ifndef OTL_DNNL_CONV_H
#define OTL_DNNL_CONV_H

#include <oneapi/dnnl/dnnl.h>

#include "cpu_kernels.h"

typedef struct otl_dnnl_conv otl_dnnl_conv;

/* Whether node n (with shapes t) can run on the oneDNN primitive. */
bool otl_dnnl_conv_supported(const otl_node *n, const otl_tinfo *t);

/* The arithmetic of one convolution.  fp32 by default.  With bf16 the
 * weights and the input are rounded to bfloat16 (AMX or AVX512_BF16 multiply
 * them) and the sums kept in fp32.  With u8 or s8 the input is quantised as
 * round(x * in_scale), the weights per output channel to s8, and the int32
 * sums scaled back.  The input may arrive already in the multiplied type,
 * and the output may be written in it for convolutions that read it so.  In
 * int8, a fused residual is added in the output's size: an int8 output sums
 * an int8 residual (ResNet's blocks then pass int8 tensors from one to the
 * next), an fp32 output an fp32 one; a residual of the other size is
 * converted into the output buffer first. */
typedef struct {
    dnnl_data_type_t multiply; /* dnnl_f32, dnnl_bf16, dnnl_u8 or dnnl_s8 */
    float in_scale;            /* int8 */
    bool in_held;              /* the input arrives as multiply's type */
    dnnl_data_type_t out;      /* dnnl_f32, or the type a reader multiplies */
    float out_scale;           /* an int8 output: round(y * out_scale) */
    dnnl_data_type_t skip;     /* a fused residual's type as it arrives: dnnl_f32, or u8 or s8 */
    dnnl_data_type_t skip_int8; /* its int8 type, u8 or s8 (dnnl_f32: it has none) */
    float skip_scale;          /* and that type's scale: round(x * skip_scale) */
} otl_conv_arith;

#define OTL_CONV_FP32 ((otl_conv_arith){dnnl_f32, 1.0f, false, dnnl_f32, 1.0f, dnnl_f32, dnnl_f32, 1.0f})

/* A 2-D window's strides, dilations and paddings as oneDNN takes them: the
 * right padding is what the output's size implies (ceil_mode's included). */
void otl_dnnl_window_geometry(const otl_window *w, dnnl_dims_t strides, dnnl_dims_t dil, dnnl_dims_t pad_l,
                              dnnl_dims_t pad_r);
/* Conv n's strides, dilations and paddings as oneDNN takes them. */
onnxtl_status *otl_dnnl_conv_geometry(const otl_node *n, const otl_tinfo *t, dnnl_dims_t strides, dnnl_dims_t dil,
                                      dnnl_dims_t pad_l, dnnl_dims_t pad_r);
/* n's weights' dimensions as oneDNN counts them, a group dimension first
 * where it is grouped; returns their number, 4 or 5. */
int otl_dnnl_conv_weights_dims(const otl_node *n, const otl_tinfo *t, dnnl_dims_t d);

/* Builds the primitive for n's shapes and reorders its constant weights
 * once.  An fp32 3x3 stride-1 convolution of 64 channels or more, over 16
 * output tiles (4x4) or more in the batch, runs onnxtl's Winograd F(4x4,
 * 3x3) instead, on a CPU with AVX2 or AVX-512. */
onnxtl_status *otl_dnnl_conv_create(dnnl_engine_t engine, dnnl_stream_t stream, const otl_node *n,
                                    const otl_tinfo *t, otl_conv_arith arith, otl_dnnl_conv **out);
/* Whether dw, a 3x3 depthwise convolution (padding 1, stride 1 or 2) of the
 * output of n, a 1x1 convolution, could run inside n as oneDNN's fused
 * depthwise post-op: MobileNet's and EfficientNet's expansion, whose wide
 * output then never goes to memory. */
bool otl_dnnl_dw_fusable(const otl_node *n, const otl_node *dw, const otl_tinfo *t);
/* n with dw fused (in fp32): writes dw's output.  *out is NULL, and the two
 * run apart, where oneDNN has no fused kernel for them on this CPU. */
onnxtl_status *otl_dnnl_conv_create_fused_dw(dnnl_engine_t engine, dnnl_stream_t stream, const otl_node *n,
                                             const otl_node *dw, const otl_tinfo *t, otl_dnnl_conv **out);
/* Whether n, multiplied in fp32, runs in onnxtl's Winograd here. */
bool otl_dnnl_conv_winograd_fp32(const otl_node *n, const otl_tinfo *t);
/* The scratch a run needs: the converted input (0 in fp32) and the residual
 * or a fused depthwise convolution's blocked output, or the Winograd's tiles. */
size_t otl_dnnl_conv_scratch_bytes(const otl_dnnl_conv *c);
/* src, skip (the fused residual, or NULL) and dst are NHWC, in the types it
 * was built for; skip may be dst. */
onnxtl_status *otl_dnnl_conv_run(otl_dnnl_conv *c, const void *src, const void *skip, void *dst, void *scratch);

/* Whether oneDNN multiplies bf16 on this CPU; if not, why names what it lacks. */
bool otl_cpu_bf16_available(char *why, size_t n);
/* Whether u8 inputs may use all of 0..255: VNNI and AMX sum u8 x s8 products
 * in 32 bits, while AVX2 and AVX-512 without VNNI pair them in saturating 16
 * bits (VPMADDUBSW), where oneDNN asks for 0..127. */
bool otl_cpu_u8_full_range(void);
/* The instruction set of onnxtl's Winograd kernels here: "avx512", "avx2" or "none". */
const char *otl_cpu_winograd_isa(void);
/* The instruction set oneDNN's kernels use here, as a name ("avx512_core_amx"). */
const char *otl_cpu_isa_name(void);
void otl_dnnl_conv_release(otl_dnnl_conv *c);

#endif
