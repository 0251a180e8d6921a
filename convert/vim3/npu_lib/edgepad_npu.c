/*
 * edgepad's per-model NPU library with Khadas' libnn ABI (see edgepad_npu.h). edgepad_case.h, written by edgepad next to the
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

#define NPU_LIBRARY_VERSION "edgepad-npu 2 (Khadas libnn ABI)"
#define NBG_HEADER_BYTES 12

#ifndef EDGEPAD_EMULATOR_SDK
#define EDGEPAD_EMULATOR_SDK "" /* a board build: the NPU driver is the real one */
#endif

/* Read from the file by the Python loader *before* it loads the library: VeriSilicon's emulator takes its
 * NPU model (VSIMULATOR_CONFIG) from the environment when it is loaded, so the loader must set it first. */
__attribute__((used)) static const char build_info[] =
    "edgepad-npu-build;case=" EDGEPAD_CASE_NAME ";target=" EDGEPAD_TARGET_NAME ";sdk=" EDGEPAD_EMULATOR_SDK ";";

#define PLATFORM_INTERLEAVED 1 /* TENSORFLOW, KERAS, TFLITE: H, W, C */
#define PLATFORM_CAFFE 2       /* planar C, H, W */
#define PLATFORM_PLANAR 3      /* PYTORCH, DARKNET, ONNX: planar C, H, W */

/* Khadas' ABI has no handle: one network per process, as in Khadas' own libraries. */
static vsi_nn_graph_t *graph;
static char created_from[4096]; /* the model file the graph was made from */
static char last_error[512];

/* The host (emulator) build: set the emulator's environment as the library loads, unless the caller did. The
 * Python loader sets it before loading; KSNN loads the library directly. */
__attribute__((constructor)) static void configure_emulator(void)
{
    if (EDGEPAD_EMULATOR_SDK[0] != '\0') {
        setenv("VIVANTE_SDK_DIR", EDGEPAD_EMULATOR_SDK, 0);
        setenv("VSIMULATOR_CONFIG", EDGEPAD_TARGET_NAME, 0);
    }
}

static void set_error(const char *format, ...)
{
    va_list args;
    va_start(args, format);
    vsnprintf(last_error, sizeof(last_error), format, args);
    va_end(args);
    fprintf(stderr, "edgepad-npu: %s\n", last_error); /* KSNN only sees a status: say why where a user looks */
}

const char *NPU_GetLastError(void)
{
    return last_error;
}

char *NPU_version(void)
{
    static char version[200];
    snprintf(version, sizeof(version), "%s; case %s; target pid 0x%x; ovxlib %d.%d.%d", NPU_LIBRARY_VERSION,
             EDGEPAD_CASE_NAME, (unsigned)EDGEPAD_TARGET_PID, VSI_NN_VERSION_MAJOR, VSI_NN_VERSION_MINOR,
             VSI_NN_VERSION_PATCH);
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

/* nb_path: the board's network_binary.nb (or the case's <name>.export.data: the quantized weights the NBG was
 * compiled from). The emulator build cannot execute an NBG (acuitylite's emulator stops with an MMU exception),
 * so given the .nb it checks its header and runs <name>.export.data from the same folder: the same graph. */
int NPU_CreateNeuralNetwork(char *nb_path, int level)
{
    char model[4096];

    (void)level; /* KSNN sets VIV_VX_DEBUG_LEVEL / VIV_VX_PROFILE from it itself */
    last_error[0] = '\0';
    if (nb_path == NULL || !(ends_with(nb_path, ".nb") || ends_with(nb_path, ".export.data"))) {
        set_error("%s: give the network binary (.nb) or the case's weights (.export.data)",
                  nb_path ? nb_path : "(null)");
        return -1;
    }
    snprintf(model, sizeof(model), "%s", nb_path);
    if (ends_with(nb_path, ".nb")) {
        if (check_nbg_header(nb_path) != 0) {
            return -1;
        }
        if (EDGEPAD_EMULATOR_SDK[0] != '\0') {
            const char *slash = strrchr(nb_path, '/');
            int folder = slash ? (int)(slash - nb_path) + 1 : 0;
            FILE *weights;
            snprintf(model, sizeof(model), "%.*s%s.export.data", folder, nb_path, EDGEPAD_CASE_NAME);
            weights = fopen(model, "rb");
            if (weights == NULL) {
                set_error("%s: missing; the emulator build runs the case's weights beside the .nb", model);
                return -1;
            }
            fclose(weights);
        }
    }
    /* one network per process (the ABI has no handle). The library is one model's: a second create from the same
     * file (another KSNN object in the same process) keeps the graph it made; another file replaces it. */
    if (graph != NULL && strcmp(created_from, model) == 0) {
        return 0;
    }
    NPU_ReleaseNeuralNetwork();
    graph = EDGEPAD_CASE_CREATE(model, NULL, NULL, 0, NULL, 0);
    if (graph == NULL) {
        set_error("%s: ovxlib could not build the graph of case %s (see its log above)", model, EDGEPAD_CASE_NAME);
        return -1;
    }
    /* KSNN's nn_init calls only this function: the graph must be ready to run when it returns */
    if (vsi_nn_VerifyGraph(graph) != VSI_SUCCESS) {
        set_error("%s: ovxlib rejected the graph of case %s at verification", model, EDGEPAD_CASE_NAME);
        EDGEPAD_CASE_RELEASE(graph, TRUE);
        graph = NULL;
        return -1;
    }
    snprintf(created_from, sizeof(created_from), "%s", model);
    return 0;
}

void NPU_ReleaseNeuralNetwork(void)
{
    if (graph != NULL) {
        EDGEPAD_CASE_RELEASE(graph, TRUE);
        graph = NULL;
    }
    created_from[0] = '\0';
}

int NPU_VerifyGraph(void)
{
    if (graph == NULL) {
        set_error("no network (NPU_CreateNeuralNetwork failed or was not called)");
        return -1;
    }
    if (vsi_nn_VerifyGraph(graph) != VSI_SUCCESS) {
        set_error("case %s: ovxlib rejected the graph at verification", EDGEPAD_CASE_NAME);
        return -1;
    }
    return 0;
}

int NPU_GetInputTensorNum(void)
{
    return graph ? (int)graph->input.num : -1;
}

int NPU_GetOutputTensorNum(void)
{
    return graph ? (int)graph->output.num : -1;
}

static vsi_nn_tensor_t *graph_tensor(int index, int is_input)
{
    const char *kind = is_input ? "input" : "output";
    uint32_t count;

    if (graph == NULL) {
        set_error("no network (NPU_CreateNeuralNetwork failed or was not called)");
        return NULL;
    }
    count = is_input ? graph->input.num : graph->output.num;
    if (index < 0 || (uint32_t)index >= count) {
        set_error("%s %d: the case %s has %u %ss", kind, index, EDGEPAD_CASE_NAME, count, kind);
        return NULL;
    }
    return vsi_nn_GetTensor(graph, is_input ? graph->input.tensors[index] : graph->output.tensors[index]);
}

static npu_tensor describe(int index, int is_input)
{
    npu_tensor info;
    vsi_nn_tensor_t *tensor = graph_tensor(index, is_input);
    const vsi_nn_tensor_attr_t *attr;
    uint32_t i;

    memset(&info, 0, sizeof(info));
    if (tensor == NULL) {
        return info; /* dim_num 0: KSNN reads no values */
    }
    attr = &tensor->attr;
    info.dim_num = attr->dim_num < NPU_MAX_DIM_NUM ? attr->dim_num : NPU_MAX_DIM_NUM;
    for (i = 0; i < info.dim_num; i++) {
        info.size[i] = (unsigned int)attr->size[i];
    }
    info.vtl = attr->vtl;
    info.is_const = attr->is_const;
    info.dtype.fmt = (char)attr->dtype.fmt;
    info.dtype.nn_type = (int)attr->dtype.vx_type;
    info.dtype.qdata.qnt_type = (char)attr->dtype.qnt_type;
    if (attr->dtype.qnt_type == VSI_NN_QNT_TYPE_DFP) {
        info.dtype.qdata.meanful.dynamic_fixed_point.fl = (signed char)attr->dtype.fl;
    } else if (attr->dtype.qnt_type == VSI_NN_QNT_TYPE_AFFINE_ASYMMETRIC ||
               attr->dtype.qnt_type == VSI_NN_QNT_TYPE_AFFINE_SYMMETRIC) {
        info.dtype.qdata.meanful.affine_asymmetric.zero_point = attr->dtype.zero_point;
        info.dtype.qdata.meanful.affine_asymmetric.scale = attr->dtype.scale;
    }
    info.is_created_from_handle = attr->is_created_from_handle;
    info.is_handle_malloc_by_ovxlib = attr->is_handle_malloc_by_ovxlib;
    return info;
}

npu_tensor NPU_GetInputTensor(int index)
{
    return describe(index, 1);
}

npu_tensor NPU_GetOutputTensor(int index)
{
    return describe(index, 0);
}

/* As in Khadas' libraries: the bytes per element of output `index`. */
int NPU_TypeGetBytes(int output_index)
{
    vsi_nn_tensor_t *tensor = graph_tensor(output_index, 0);
    return tensor ? (int)vsi_nn_TypeGetBytes(tensor->attr.dtype.vx_type) : -1;
}

static const char *type_name(int nn_type)
{
    switch (nn_type) {
    case VSI_NN_TYPE_UINT8: return "uint8";
    case VSI_NN_TYPE_INT8: return "int8";
    case VSI_NN_TYPE_INT16: return "int16";
    case VSI_NN_TYPE_FLOAT16: return "float16";
    case VSI_NN_TYPE_FLOAT32: return "float32";
    default: return "another type";
    }
}

/* Element i of the tensor (planar C, H, W for edgepad's graphs) from the caller's layout. */
static size_t source_index(size_t i, const vsi_nn_tensor_attr_t *attr, int platform)
{
    size_t width, height, channels, x, y, c;

    if (platform != PLATFORM_INTERLEAVED || attr->dim_num < 3) {
        return i;
    }
    width = attr->size[0];
    height = attr->size[1];
    channels = attr->size[2];
    x = i % width;
    y = (i / width) % height;
    c = (i / (width * height)) % channels;
    return (i / (width * height * channels)) * width * height * channels + (y * width + x) * channels + c;
}

static int set_input(const float *floats, const short *shorts, const unsigned char *bytes_in, int want_type,
                     int reorder, int platform, int index)
{
    vsi_nn_tensor_t *tensor = graph_tensor(index, 1);
    size_t count, bytes, i;
    uint8_t *raw;
    vsi_status status;

    if (tensor == NULL) {
        return -1;
    }
    if (want_type >= 0 && (int)tensor->attr.dtype.vx_type != want_type) {
        set_error("input %d is %s, not %s: call the setter for its type (KSNN chooses it from dtype.nn_type)", index,
                  type_name((int)tensor->attr.dtype.vx_type), type_name(want_type));
        return -1;
    }
    if (reorder != 0 && reorder != 1) {
        set_error("input %d: reorder %d; KSNN passes 0 ('0 1 2') or 1 ('2 1 0')", index, reorder);
        return -1;
    }
    if (platform < PLATFORM_INTERLEAVED || platform > PLATFORM_PLANAR) {
        set_error("input %d: platform %d; pass the model card's platform (KSNN: 1 TENSORFLOW/KERAS/TFLITE, "
                  "2 CAFFE, 3 PYTORCH/DARKNET/ONNX)", index, platform);
        return -1;
    }
    if (floats == NULL && shorts == NULL && bytes_in == NULL) {
        set_error("input %d: no data", index);
        return -1;
    }
    count = (size_t)vsi_nn_GetElementNum(tensor);
    bytes = vsi_nn_TypeGetBytes(tensor->attr.dtype.vx_type);
    raw = (uint8_t *)calloc(count, bytes);
    if (raw == NULL) {
        set_error("out of memory");
        return -1;
    }
    for (i = 0; i < count; i++) {
        size_t from = source_index(i, &tensor->attr, platform);
        float value = floats ? floats[from] : shorts ? (float)shorts[from] : (float)bytes_in[from];
        vsi_nn_Float32ToDtype(value, raw + i * bytes, &tensor->attr.dtype);
    }
    status = vsi_nn_CopyDataToTensor(graph, tensor, raw);
    free(raw);
    if (status != VSI_SUCCESS) {
        set_error("input %d: ovxlib could not copy the data into the tensor", index);
        return -1;
    }
    return 0;
}

int NPU_SetInput_U8(float *data, int reorder, int platform, int index)
{
    return set_input(data, NULL, NULL, VSI_NN_TYPE_UINT8, reorder, platform, index);
}

int NPU_SetInput_I8(float *data, int reorder, int platform, int index)
{
    return set_input(data, NULL, NULL, VSI_NN_TYPE_INT8, reorder, platform, index);
}

int NPU_SetInput_I16(float *data, int reorder, int platform, int index)
{
    return set_input(data, NULL, NULL, VSI_NN_TYPE_INT16, reorder, platform, index);
}

/* KSNN passes np.asarray(image, dtype=np.int16) here: integer values, not float16 bit patterns. */
int NPU_SetInput_F16(short *data, int reorder, int platform, int index)
{
    return set_input(NULL, data, NULL, VSI_NN_TYPE_FLOAT16, reorder, platform, index);
}

/* KSNN 1.0 and 1.1 call this one setter with uint8 pixels (np.asarray(image, dtype=np.uint8)), any tensor type. */
int NPU_SetInput(unsigned char *data, int reorder, int platform, int index)
{
    return set_input(NULL, NULL, data, -1, reorder, platform, index);
}

/* A raw file of float32 values in the tensor's order for input 0 (Khadas' libraries read a picture here). */
int NPU_PreProcessNeuralNetwork(char *input_path)
{
    vsi_nn_tensor_t *tensor = graph_tensor(0, 1);
    size_t count, got;
    float *values;
    FILE *file;
    int status;

    if (tensor == NULL) {
        return -1;
    }
    file = input_path ? fopen(input_path, "rb") : NULL;
    if (file == NULL) {
        set_error("%s: cannot open it (edgepad's library reads raw float32 values in the tensor's order)",
                  input_path ? input_path : "(null)");
        return -1;
    }
    count = (size_t)vsi_nn_GetElementNum(tensor);
    values = (float *)malloc(count * sizeof(float));
    got = values ? fread(values, sizeof(float), count, file) : 0;
    fclose(file);
    if (got != count) {
        set_error("%s: holds %zu float32 values, input 0 takes %zu", input_path, got, count);
        free(values);
        return -1;
    }
    status = set_input(values, NULL, NULL, -1, 0, PLATFORM_PLANAR, 0);
    free(values);
    return status;
}

int NPU_ProcessGraph(void)
{
    if (graph == NULL) {
        set_error("no network (NPU_CreateNeuralNetwork failed or was not called)");
        return -1;
    }
    if (vsi_nn_RunGraph(graph) != VSI_SUCCESS) {
        set_error("case %s: ovxlib failed to run the graph", EDGEPAD_CASE_NAME);
        return -1;
    }
    /* edgepad's diagnosis: every node's output as text, in a build whose tensors are not virtual */
    if (getenv("EDGEPAD_NPU_DUMP_DIR") != NULL) {
        vsi_nn_DumpGraphNodeOutputs(graph, getenv("EDGEPAD_NPU_DUMP_DIR"), NULL, 0, TRUE, 0);
    }
    return 0;
}

/* Khadas' libraries print a top-5 here; the outputs are read with NPU_ConvertTensorToData_* instead. */
int NPU_PostProcessNeuralNetwork(void)
{
    return graph ? 0 : -1;
}

int NPU_ConvertTensorToData_F32(int index, float *out)
{
    vsi_nn_tensor_t *tensor = graph_tensor(index, 0);
    float *values;

    if (tensor == NULL || out == NULL) {
        return -1;
    }
    values = vsi_nn_ConvertTensorToFloat32Data(graph, tensor);
    if (values == NULL) {
        set_error("output %d: ovxlib could not read the tensor", index);
        return -1;
    }
    memcpy(out, values, (size_t)vsi_nn_GetElementNum(tensor) * sizeof(float));
    vsi_nn_Free(values);
    return 0;
}

static int raw_output(int index, void *out, int want_type)
{
    vsi_nn_tensor_t *tensor = graph_tensor(index, 0);
    uint8_t *bytes;
    int type;

    if (tensor == NULL || out == NULL) {
        return -1;
    }
    type = (int)tensor->attr.dtype.vx_type;
    if (type != want_type) {
        set_error("output %d is %s, not %s: read it with NPU_ConvertTensorToData_F32", index, type_name(type),
                  type_name(want_type));
        return -1;
    }
    bytes = vsi_nn_ConvertTensorToData(graph, tensor);
    if (bytes == NULL) {
        set_error("output %d: ovxlib could not read the tensor", index);
        return -1;
    }
    memcpy(out, bytes, (size_t)vsi_nn_GetElementNum(tensor) * vsi_nn_TypeGetBytes(tensor->attr.dtype.vx_type));
    vsi_nn_Free(bytes);
    return 0;
}

int NPU_ConvertTensorToData_U8(int index, unsigned char *out)
{
    return raw_output(index, out, VSI_NN_TYPE_UINT8);
}

int NPU_ConvertTensorToData_I8(int index, signed char *out)
{
    return raw_output(index, out, VSI_NN_TYPE_INT8);
}

int NPU_ConvertTensorToData_I16(int index, short *out)
{
    return raw_output(index, out, VSI_NN_TYPE_INT16);
}

int NPU_ConvertTensorToData_F16(int index, short *out)
{
    return raw_output(index, out, VSI_NN_TYPE_FLOAT16);
}
