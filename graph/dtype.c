#include "dtype.h"

#include "onnxtl_base.h"

size_t otl_dtype_size(int dtype) {
    switch (dtype) {
    case ONNXTL_BOOL: case ONNXTL_INT8: case ONNXTL_UINT8: return 1;
    case ONNXTL_INT16: case ONNXTL_UINT16: case ONNXTL_FLOAT16: case ONNXTL_BFLOAT16: return 2;
    case ONNXTL_INT32: case ONNXTL_UINT32: case ONNXTL_FLOAT: return 4;
    case ONNXTL_INT64: case ONNXTL_UINT64: case ONNXTL_DOUBLE: return 8;
    default: return 0;
    }
}

const char *otl_dtype_name(int dtype) {
    static const char *const names[] = {
        [0] = "undefined", [ONNXTL_FLOAT] = "float32", [ONNXTL_UINT8] = "uint8",
        [ONNXTL_INT8] = "int8", [ONNXTL_UINT16] = "uint16", [ONNXTL_INT16] = "int16",
        [ONNXTL_INT32] = "int32", [ONNXTL_INT64] = "int64", [8] = "string",
        [ONNXTL_BOOL] = "bool", [ONNXTL_FLOAT16] = "float16", [ONNXTL_DOUBLE] = "float64",
        [ONNXTL_UINT32] = "uint32", [ONNXTL_UINT64] = "uint64", [14] = "complex64",
        [15] = "complex128", [ONNXTL_BFLOAT16] = "bfloat16", [17] = "float8e4m3fn",
        [18] = "float8e4m3fnuz", [19] = "float8e5m2", [20] = "float8e5m2fnuz",
        [21] = "uint4", [22] = "int4", [23] = "float4e2m1",
    };
    if (dtype >= 0 && dtype < (int)(sizeof names / sizeof names[0]) && names[dtype])
        return names[dtype];
    return "unknown type";
}

int otl_dtype_is_float(int dtype) {
    return dtype == ONNXTL_FLOAT || dtype == ONNXTL_DOUBLE || dtype == ONNXTL_FLOAT16 ||
           dtype == ONNXTL_BFLOAT16;
}
