/*
 * edgepad's per-model NPU library: the entry points Khadas' KSNN expects of a libnn_<name>.so, around one
 * ACUITY-generated ovxlib case (vnn_<name>.c) that loads the model's network_binary.nb.
 *
 * Every function returns 0 (or a pointer) on success and a negative value (or NULL) on failure;
 * NPU_GetLastError() then says why in one line. Tensor data is in the framework's order (NCHW for ONNX),
 * which is ovxlib's memory order with its sizes listed fastest-first.
 */
#ifndef EDGEPAD_NPU_H
#define EDGEPAD_NPU_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NPU_MAX_DIMS 8

/* One graph input or output as the NPU holds it; Python reads it with ctypes, so keep the layout flat. */
typedef struct {
    uint32_t dim_count;
    uint32_t dims[NPU_MAX_DIMS];  /* framework order: outermost (batch) first */
    int32_t dtype;                /* ovxlib's vsi_nn_type_e (VX_TYPE_UINT8 = 0x003, FLOAT16 = 0x00F, ...) */
    int32_t qnt_type;             /* 0 none, 1 dynamic fixed point, 2 asymmetric affine, 4 symmetric affine */
    float scale;
    int32_t zero_point;
    int32_t fixed_point_bits;     /* dynamic fixed point: fractional length */
    uint32_t element_count;
    uint32_t byte_count;
} npu_tensor_info_t;

typedef struct npu_network npu_network_t;

const char *NPU_version(void);
const char *NPU_GetLastError(void);
uint32_t NPU_GetTargetPid(void);

npu_network_t *NPU_CreateNeuralNetwork(const char *model_path);
void NPU_ReleaseNeuralNetwork(npu_network_t *network);

int NPU_GetInputTensorNum(const npu_network_t *network);
int NPU_GetOutputTensorNum(const npu_network_t *network);
int NPU_GetInputTensorInfo(const npu_network_t *network, int index, npu_tensor_info_t *info);
int NPU_GetOutputTensorInfo(const npu_network_t *network, int index, npu_tensor_info_t *info);

/* Raw: bytes already in the tensor's dtype (quantized by the caller). Float32: quantized here by ovxlib. */
int NPU_SetInput_Raw(npu_network_t *network, int index, const void *data, size_t byte_count);
int NPU_SetInput_Float32(npu_network_t *network, int index, const float *data, size_t element_count);

int NPU_ProcessGraph(npu_network_t *network);

/* Output dequantized to float32 (Float32) or the tensor's own bytes (Raw). */
int NPU_ConvertTensorToData_Float32(npu_network_t *network, int index, float *out, size_t element_count);
int NPU_ConvertTensorToData_Raw(npu_network_t *network, int index, void *out, size_t byte_count);

#ifdef __cplusplus
}
#endif

#endif
