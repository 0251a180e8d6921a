/*
 * edgepad's per-model NPU library: the entry points Khadas' KSNN calls on a libnn_<name>.so, around one
 * ACUITY-generated ovxlib case (vnn_<name>.c) that loads the model's network_binary.nb.
 *
 * The ABI is Khadas' own (KSNN 1.0-1.4's ksnn/kplatform/vim3/vim3_nn_api.py and vim3_nn_types.py, and the symbols
 * of the libnn_*.so files in Khadas' KSNN examples): one network per process, no handle; functions return 0 on
 * success. The npu_tensor struct is returned by value with exactly the fields KSNN's ctypes declaration has.
 *
 * Inputs (NPU_SetInput_U8/I8/I16): float values, converted to the tensor's type element by element with ovxlib's
 * vsi_nn_Float32ToDtype (affine: rint(x / scale) + zero_point; dynamic fixed point: rint(x * 2^fl); ovxlib's rint
 * rounds to the nearest integer, ties (|fraction - 0.5| < 1e-8) to even; then clipped to the type's range).
 * `platform` says how the caller laid the values out: 1 (TENSORFLOW/KERAS/TFLITE) interleaved H, W, C; 2 (CAFFE)
 * and 3 (PYTORCH/DARKNET/ONNX) planar C, H, W. The values go into the tensor in its own order (edgepad's graphs come
 * from ONNX: planar), transposed only when the caller's layout is interleaved. `reorder` (0 = '0 1 2',
 * 1 = '2 1 0') does not move channels, as in Khadas' libraries: the channel order is the model card's.
 * Platform 0 (Khadas' libraries write nothing for it) is refused.
 *
 * Additions for edgepad (KSNN never calls them): NPU_GetLastError, NPU_GetTargetPid.
 */
#ifndef EDGEPAD_NPU_H
#define EDGEPAD_NPU_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NPU_MAX_DIM_NUM 8

/* KSNN's npu_tensor (vim3_nn_types.py), field for field: C's natural alignment is what ctypes uses. */
typedef struct {
    float *scales;
    int scale_dim;
    int channel_dim;
    int *zero_points;
    int zero_points_dim;
} npu_affine_perchannel_symmetric_t;

typedef struct {
    char qnt_type;   /* 0 none, 1 dynamic fixed point, 2 asymmetric affine, 3 per-channel symmetric */
    union {
        struct { signed char fl; } dynamic_fixed_point;
        struct { int zero_point; float scale; } affine_asymmetric;
        npu_affine_perchannel_symmetric_t affine_perchannel_symmetric;
    } meanful;
} npu_qdata_t;

typedef struct {
    char fmt;        /* 0 NCHW, 1 NHWC */
    int nn_type;     /* ovxlib's vsi_nn_type_e: 0x002 int8, 0x003 uint8, 0x004 int16, 0x00F float16, ... */
    npu_qdata_t qdata;
} npu_dtype_t;

typedef struct {
    unsigned int size[NPU_MAX_DIM_NUM];  /* ovxlib's order: fastest-varying first (W, H, C, N) */
    unsigned int dim_num;
    int vtl;
    int is_const;
    npu_dtype_t dtype;
    int is_created_from_handle;
    int is_handle_malloc_by_ovxlib;
    char npu_memory_type;
} npu_tensor;

int NPU_CreateNeuralNetwork(char *nb_path, int level);
void NPU_ReleaseNeuralNetwork(void);
char *NPU_version(void);
int NPU_VerifyGraph(void);
int NPU_ProcessGraph(void);
int NPU_PreProcessNeuralNetwork(char *input_path);
int NPU_PostProcessNeuralNetwork(void);

int NPU_GetInputTensorNum(void);
int NPU_GetOutputTensorNum(void);
npu_tensor NPU_GetInputTensor(int index);
npu_tensor NPU_GetOutputTensor(int index);
int NPU_TypeGetBytes(int output_index);

int NPU_SetInput_U8(float *data, int reorder, int platform, int index);
int NPU_SetInput_I8(float *data, int reorder, int platform, int index);
int NPU_SetInput_I16(float *data, int reorder, int platform, int index);
int NPU_SetInput_F16(short *data, int reorder, int platform, int index);
/* KSNN 1.0 / 1.1: uint8 pixels, converted the same way whatever the tensor's type */
int NPU_SetInput(unsigned char *data, int reorder, int platform, int index);

/* F32: dequantized values. U8/I8/I16/F16: the tensor's own elements, when it has that type. */
int NPU_ConvertTensorToData_U8(int index, unsigned char *out);
int NPU_ConvertTensorToData_I8(int index, signed char *out);
int NPU_ConvertTensorToData_I16(int index, short *out);
int NPU_ConvertTensorToData_F16(int index, short *out);
int NPU_ConvertTensorToData_F32(int index, float *out);

/* edgepad's additions */
const char *NPU_GetLastError(void);
uint32_t NPU_GetTargetPid(void);

#ifdef __cplusplus
}
#endif

#endif
