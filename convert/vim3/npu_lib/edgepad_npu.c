/*
 * edgepad's per-model NPU library (see edgepad_npu.h). edgepad_case.h, written by edgepad next to the
 * generated case, names the case's header, its create/release functions and the target the NBG was
 * compiled for; the same sources build for the host emulator and for the board.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vsi_nn_pub.h"
#include "vnn_global.h"
#include "edgepad_case.h"
#include "edgepad_npu.h"

#define NPU_LIBRARY_VERSION "edgepad-npu 1"
#define NBG_HEADER_BYTES 12

#ifndef EDGEPAD_EMULATOR_SDK
#define EDGEPAD_EMULATOR_SDK "" /* a board build: the NPU driver is the real one */
#endif

/* Read from the file by the Python loader *before* it loads the library: VeriSilicon's emulator takes its
 * NPU model (VSIMULATOR_CONFIG) from the environment when it is loaded, so the loader must set it first. */
__attribute__((used)) static const char build_info[] =
    "edgepad-npu-build;case=" EDGEPAD_CASE_NAME ";target=" EDGEPAD_TARGET_NAME ";sdk=" EDGEPAD_EMULATOR_SDK ";";

struct npu_network {
    vsi_nn_graph_t *graph;
};

static char last_error[512];

static void set_error(const char *format, ...)
{
    va_list args;
    va_start(args, format);
    vsnprintf(last_error, sizeof(last_error), format, args);
    va_end(args);
}

const char *NPU_GetLastError(void)
{
    return last_error;
}

const char *NPU_version(void)
{
    static char version[160];
    snprintf(version, sizeof(version), "%s; case %s; target pid 0x%x; ovxlib %d.%d.%d",
             NPU_LIBRARY_VERSION, EDGEPAD_CASE_NAME, (unsigned)EDGEPAD_TARGET_PID,
             VSI_NN_VERSION_MAJOR, VSI_NN_VERSION_MINOR, VSI_NN_VERSION_PATCH);
    return version;
}

uint32_t NPU_GetTargetPid(void)
{
    return (uint32_t)EDGEPAD_TARGET_PID;
}

/* The NBG names the NPU it was compiled for (magic "VPMN", little-endian PID at byte 8). A binary for
 * another NPU would load and compute garbage, so refuse it before ovxlib sees it. */
static int check_nbg_header(const char *path)
{
    unsigned char header[NBG_HEADER_BYTES];
    uint32_t pid;
    FILE *file = fopen(path, "rb");
    size_t got;

    if (file == NULL) {
        set_error("%s: cannot open the network binary", path);
        return -1;
    }
    got = fread(header, 1, sizeof(header), file);
    fclose(file);
    if (got != sizeof(header) || memcmp(header, "VPMN", 4) != 0) {
        set_error("%s: not a network binary (no VPMN header)", path);
        return -1;
    }
    pid = (uint32_t)header[8] | ((uint32_t)header[9] << 8) | ((uint32_t)header[10] << 16) |
          ((uint32_t)header[11] << 24);
    if (pid != (uint32_t)EDGEPAD_TARGET_PID) {
        set_error("%s: compiled for NPU pid 0x%x, but this library was built for pid 0x%x", path,
                  (unsigned)pid, (unsigned)EDGEPAD_TARGET_PID);
        return -1;
    }
    return 0;
}

static int ends_with(const char *text, const char *suffix)
{
    size_t length = strlen(text), suffix_length = strlen(suffix);
    return length > suffix_length && strcmp(text + length - suffix_length, suffix) == 0;
}

/* model_path: the board's network_binary.nb, or the case's <name>.export.data (the quantized weights the
 * NBG was compiled from), which the host emulator runs: ovxlib then builds the same graph itself. */
npu_network_t *NPU_CreateNeuralNetwork(const char *model_path)
{
    npu_network_t *network;

    last_error[0] = '\0';
    if (model_path == NULL || !(ends_with(model_path, ".nb") || ends_with(model_path, ".export.data"))) {
        /* the generated case tells an NBG from a weights file by this suffix */
        set_error("%s: give the network binary (.nb) or the case's weights (.export.data)",
                  model_path ? model_path : "(null)");
        return NULL;
    }
    if (ends_with(model_path, ".nb") && check_nbg_header(model_path) != 0) {
        return NULL;
    }
    network = (npu_network_t *)calloc(1, sizeof(*network));
    if (network == NULL) {
        set_error("out of memory");
        return NULL;
    }
    network->graph = EDGEPAD_CASE_CREATE(model_path, NULL, NULL, 0, NULL, 0);
    if (network->graph == NULL) {
        set_error("%s: ovxlib could not build the graph of case %s (see its log above)", model_path,
                  EDGEPAD_CASE_NAME);
        free(network);
        return NULL;
    }
    if (vsi_nn_VerifyGraph(network->graph) != VSI_SUCCESS) {
        set_error("%s: ovxlib rejected the graph of case %s at verification", model_path, EDGEPAD_CASE_NAME);
        EDGEPAD_CASE_RELEASE(network->graph, TRUE);
        free(network);
        return NULL;
    }
    return network;
}

void NPU_ReleaseNeuralNetwork(npu_network_t *network)
{
    if (network == NULL) {
        return;
    }
    if (network->graph != NULL) {
        EDGEPAD_CASE_RELEASE(network->graph, TRUE);
    }
    free(network);
}

int NPU_GetInputTensorNum(const npu_network_t *network)
{
    return network ? (int)network->graph->input.num : -1;
}

int NPU_GetOutputTensorNum(const npu_network_t *network)
{
    return network ? (int)network->graph->output.num : -1;
}

static vsi_nn_tensor_t *graph_tensor(const npu_network_t *network, int index, int is_input)
{
    const char *kind = is_input ? "input" : "output";
    uint32_t count;

    if (network == NULL) {
        set_error("no network (NPU_CreateNeuralNetwork failed or was not called)");
        return NULL;
    }
    count = is_input ? network->graph->input.num : network->graph->output.num;
    if (index < 0 || (uint32_t)index >= count) {
        set_error("%s %d: the case %s has %u %ss", kind, index, EDGEPAD_CASE_NAME, count, kind);
        return NULL;
    }
    return vsi_nn_GetTensor(network->graph,
                            is_input ? network->graph->input.tensors[index] : network->graph->output.tensors[index]);
}

static int describe(const npu_network_t *network, int index, int is_input, npu_tensor_info_t *info)
{
    vsi_nn_tensor_t *tensor = graph_tensor(network, index, is_input);
    const vsi_nn_tensor_attr_t *attr;
    uint32_t i;

    if (tensor == NULL || info == NULL) {
        return -1;
    }
    attr = &tensor->attr;
    memset(info, 0, sizeof(*info));
    info->dim_count = attr->dim_num < NPU_MAX_DIMS ? attr->dim_num : NPU_MAX_DIMS;
    for (i = 0; i < info->dim_count; i++) {
        /* ovxlib lists sizes fastest-varying first; frameworks list them outermost first */
        info->dims[i] = (uint32_t)attr->size[info->dim_count - 1 - i];
    }
    info->dtype = (int32_t)attr->dtype.vx_type;
    info->qnt_type = (int32_t)attr->dtype.qnt_type;
    if (attr->dtype.qnt_type == VSI_NN_QNT_TYPE_DFP) {
        info->fixed_point_bits = attr->dtype.fl;
    } else if (attr->dtype.qnt_type != VSI_NN_QNT_TYPE_NONE) {
        info->scale = attr->dtype.scale;
        info->zero_point = attr->dtype.zero_point;
    }
    info->element_count = (uint32_t)vsi_nn_GetElementNum(tensor);
    info->byte_count = info->element_count * vsi_nn_TypeGetBytes(attr->dtype.vx_type);
    return 0;
}

int NPU_GetInputTensorInfo(const npu_network_t *network, int index, npu_tensor_info_t *info)
{
    return describe(network, index, 1, info);
}

int NPU_GetOutputTensorInfo(const npu_network_t *network, int index, npu_tensor_info_t *info)
{
    return describe(network, index, 0, info);
}

int NPU_SetInput_Raw(npu_network_t *network, int index, const void *data, size_t byte_count)
{
    npu_tensor_info_t info;
    vsi_nn_tensor_t *tensor = graph_tensor(network, index, 1);

    if (tensor == NULL || describe(network, index, 1, &info) != 0) {
        return -1;
    }
    if (byte_count != info.byte_count) {
        set_error("input %d: got %zu bytes, the tensor holds %u", index, byte_count, info.byte_count);
        return -1;
    }
    if (vsi_nn_CopyDataToTensor(network->graph, tensor, (void *)data) != VSI_SUCCESS) {
        set_error("input %d: ovxlib could not copy the data into the tensor", index);
        return -1;
    }
    return 0;
}

int NPU_SetInput_Float32(npu_network_t *network, int index, const float *data, size_t element_count)
{
    npu_tensor_info_t info;
    vsi_nn_tensor_t *tensor = graph_tensor(network, index, 1);
    uint8_t *raw;
    int status;

    if (tensor == NULL || describe(network, index, 1, &info) != 0) {
        return -1;
    }
    if (element_count != info.element_count) {
        set_error("input %d: got %zu values, the tensor holds %u", index, element_count, info.element_count);
        return -1;
    }
    raw = (uint8_t *)malloc(info.byte_count);
    if (raw == NULL) {
        set_error("out of memory");
        return -1;
    }
    vsi_nn_DtypeConvertFloat32ToRawData((float *)data, element_count, raw, info.byte_count, &tensor->attr.dtype);
    status = NPU_SetInput_Raw(network, index, raw, info.byte_count);
    free(raw);
    return status;
}

int NPU_ProcessGraph(npu_network_t *network)
{
    if (network == NULL) {
        set_error("no network (NPU_CreateNeuralNetwork failed or was not called)");
        return -1;
    }
    if (vsi_nn_RunGraph(network->graph) != VSI_SUCCESS) {
        set_error("case %s: ovxlib failed to run the graph", EDGEPAD_CASE_NAME);
        return -1;
    }
    /* edgepad's diagnosis: every node's output as text, in a build whose tensors are not virtual */
    if (getenv("EDGEPAD_NPU_DUMP_DIR") != NULL) {
        vsi_nn_DumpGraphNodeOutputs(network->graph, getenv("EDGEPAD_NPU_DUMP_DIR"), NULL, 0, TRUE, 0);
    }
    return 0;
}

int NPU_ConvertTensorToData_Float32(npu_network_t *network, int index, float *out, size_t element_count)
{
    npu_tensor_info_t info;
    vsi_nn_tensor_t *tensor = graph_tensor(network, index, 0);
    float *values;

    if (tensor == NULL || describe(network, index, 0, &info) != 0) {
        return -1;
    }
    if (element_count != info.element_count) {
        set_error("output %d: room for %zu values, the tensor holds %u", index, element_count, info.element_count);
        return -1;
    }
    values = vsi_nn_ConvertTensorToFloat32Data(network->graph, tensor);
    if (values == NULL) {
        set_error("output %d: ovxlib could not read the tensor", index);
        return -1;
    }
    memcpy(out, values, element_count * sizeof(float));
    vsi_nn_Free(values);
    return 0;
}

int NPU_ConvertTensorToData_Raw(npu_network_t *network, int index, void *out, size_t byte_count)
{
    npu_tensor_info_t info;
    vsi_nn_tensor_t *tensor = graph_tensor(network, index, 0);
    uint8_t *bytes;

    if (tensor == NULL || describe(network, index, 0, &info) != 0) {
        return -1;
    }
    if (byte_count != info.byte_count) {
        set_error("output %d: room for %zu bytes, the tensor holds %u", index, byte_count, info.byte_count);
        return -1;
    }
    bytes = vsi_nn_ConvertTensorToData(network->graph, tensor);
    if (bytes == NULL) {
        set_error("output %d: ovxlib could not read the tensor", index);
        return -1;
    }
    memcpy(out, bytes, byte_count);
    vsi_nn_Free(bytes);
    return 0;
}
