# The ONNX schema: protoc-c compiles libonnx-dev's onnx.proto into
# $(BUILD)/onnx/onnx.pb-c.[ch] at build time.  Nothing generated is committed;
# graph/proto.c is the only reader of the generated types, graph/export.c the
# only writer.  Included by the top Makefile, which sets BUILD and CFLAGS.

ONNX_PROTO ?= /usr/include/onnx/onnx.proto
PB_C := $(BUILD)/onnx/onnx.pb-c.c

$(PB_C): $(ONNX_PROTO)
	@mkdir -p $(@D)
	cp $(ONNX_PROTO) $(@D)/onnx.proto
	cd $(@D) && protoc-c --c_out=. onnx.proto

$(BUILD)/onnx/onnx.pb-c.h: $(PB_C)

$(BUILD)/obj/onnx/onnx.pb-c.o: $(PB_C) $(BUILD)/cflags
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -w -c $< -o $@

