#!/bin/bash
# Runs every onnxtl test suite and ends with "N passed, N failed".
# Each suite prints one PASS/FAIL line per check; this script counts them.
# Reference data: ../shared/data (ONNX node tests, Dogs-vs-Cats photos);
# exported models and references are cached in build/models.
# ONNXTL_BUILD=build-san runs every suite on the ASan+UBSan binaries instead
# (make test-sanitize); the sanitizer subsets and the CUDA build are then left out.
set -u
cd "$(dirname "$0")/.."
PY=/usr/bin/python3
SHARED=${ONNXTL_SHARED:-../shared/data}
B=${ONNXTL_BUILD:-build}
LOG=$B/test-logs
rm -rf "$LOG"
mkdir -p "$LOG"

run_suite() { # name command...
    local name=$1; shift
    echo "== $name"
    local start=$SECONDS
    "$@" 2>&1 | tee "$LOG/$name.log" | grep -E '^(PASS|FAIL|SKIP)|conformance:'
    local rc=${PIPESTATUS[0]}
    if [ "$rc" -ne 0 ] && ! grep -q '^FAIL' "$LOG/$name.log"; then
        # The suite died without reporting a failed check: count that as one.
        echo "FAIL $name: exited with status $rc (see $LOG/$name.log)" | tee -a "$LOG/$name.log"
        tail -5 "$LOG/$name.log"
    fi
    echo "   ($name took $((SECONDS - start)) s)"
}

if [ -d "$SHARED/onnx-node" ]; then
    run_suite conformance $B/test_conformance test/conformance.manifest "$SHARED/onnx-node"
else
    echo "SKIP conformance: $SHARED/onnx-node is missing (the ONNX node tests live in ../shared)" |
        tee "$LOG/conformance.log"
fi
run_suite bad_models $PY test/bad_models.py $B/onnxtl
run_suite cli $PY test/cli_errors.py $B/onnxtl
run_suite parity $PY test/parity.py $B/onnxtl
# oneDNN's AVX2 kernels and onnxtl's AVX2 Winograd, on any machine that has AVX2.
run_suite parity_avx2 env ONEDNN_MAX_CPU_ISA=AVX2 $PY test/parity.py $B/onnxtl --opsets 17 --folds fold
run_suite loader $PY test/loader_tests.py $B/onnxtl
# Every backbone family of models/backbones.tsv: logits and head input against torch.
run_suite models_manifest $PY test/models_manifest.py $B/onnxtl
run_suite producers $PY test/producers_tests.py $B/onnxtl
run_suite layout $PY test/layout_tests.py $B/onnxtl
run_suite winograd $PY test/winograd_tests.py $B/onnxtl
# Per-node fallback, on the CPU: convolutions, then every other op, placed on
# a CPU backend of their own, so that each graph crosses segment boundaries.
run_suite fallback_conv $PY test/layout_tests.py $B/onnxtl --fallback Conv
run_suite fallback_ops $PY test/layout_tests.py $B/onnxtl --fallback \
    "$(sed -n 's/^OTL_OP([A-Z]*, "", "\([A-Za-z]*\)".*/\1/p' graph/ops.def | grep -vx Conv | paste -sd,)"
run_suite fallback_models env ONNXTL_FALLBACK_OPS=Concat,MaxPool $PY test/parity.py $B/onnxtl \
    --opsets 17 --folds fold --batches 2 --archs densenet121,googlenet,regnet_y_400mf
run_suite sha256 $PY test/sha256_parity.py $B/test_sha256 build/models/resnet18_op17_fold.onnx
run_suite preprocess $PY test/preprocess_parity.py $B/test_preprocess_dump "$SHARED"
run_suite extract_parity $PY test/extract_parity.py $B/onnxtl "$SHARED"
run_suite extract $PY test/extract_tests.py $B/onnxtl "$SHARED"
# The README's Slurm recipe on a single-node cluster (tools/install_deps.sh slurm).
run_suite slurm $PY test/slurm_tests.py $B/onnxtl "$SHARED"
run_suite trainer_parity $PY test/trainer_parity.py $B/onnxtl "$SHARED"
# onnxtl train: the small CNN from scratch and every op's gradient against torch, ONNX Runtime on the result.
run_suite train $PY test/train_tests.py $B/onnxtl "$SHARED"
run_suite workflow $PY test/workflow_tests.py $B/onnxtl "$SHARED"
run_suite eval $PY test/eval_tests.py $B/onnxtl "$SHARED"
run_suite report $PY test/report_tests.py $B/onnxtl "$SHARED"
run_suite json $PY test/json_tests.py $B/onnxtl "$SHARED"
run_suite precision $PY test/precision_tests.py $B/onnxtl "$SHARED"
# make install into a temporary DESTDIR, and the example built against it (not for build-san).
[ "$B" = build ] && run_suite install $PY test/install_tests.py $B/onnxtl "$SHARED"

# The CUDA backend is always compiled and linked; its parity test needs a GPU and says so.
if [ "$B" != build ]; then
    : # the sanitizer run: only the suites above
elif [ -x "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" ]; then
    if make -s CUDA=1 build-cuda/onnxtl build-cuda/test_conformance >"$LOG/cuda-build.log" 2>&1; then
        echo "PASS CUDA build (make CUDA=1) compiles and links" | tee "$LOG/cuda-result.log"
        run_suite gpu_parity $PY test/gpu_parity.py build-cuda/onnxtl
        run_suite gpu_layout $PY test/layout_tests.py build-cuda/onnxtl --device cuda
        [ -d "$SHARED/onnx-node" ] && run_suite gpu_conformance build-cuda/test_conformance \
            test/conformance.manifest "$SHARED/onnx-node" --device cuda
        run_suite gpu_trainer $PY test/trainer_parity.py build-cuda/onnxtl "$SHARED" --device cuda
    else
        echo "FAIL CUDA build (see $LOG/cuda-build.log)" | tee "$LOG/cuda-result.log"
    fi
else
    echo "SKIP CUDA build: no nvcc under ${CUDA_HOME:-/usr/local/cuda}" | tee "$LOG/cuda-result.log"
fi

# Sanitizers on a subset: the bad-model corpus, the node tests, one small network
# (make test-sanitize runs every suite under them).
if [ "${ONNXTL_SKIP_SANITIZE:-0}" != 1 ] && [ "$B" = build ]; then
    if make -s SANITIZE=1 build-san/onnxtl build-san/test_conformance build-san/test_preprocess_dump replays \
        >"$LOG/sanitize-build.log" 2>&1; then
        export ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1
        run_suite asan_bad_models $PY test/bad_models.py build-san/onnxtl
        [ -d "$SHARED/onnx-node" ] &&
            run_suite asan_conformance build-san/test_conformance test/conformance.manifest "$SHARED/onnx-node"
        run_suite asan_parity $PY test/parity.py build-san/onnxtl --archs resnet18 --opsets 13 --batches 1
        run_suite asan_layout $PY test/layout_tests.py build-san/onnxtl
        run_suite asan_winograd $PY test/winograd_tests.py build-san/onnxtl
        run_suite asan_extract $PY test/extract_tests.py build-san/onnxtl "$SHARED" bad_files
        run_suite asan_preprocess $PY test/preprocess_parity.py build-san/test_preprocess_dump "$SHARED"
        # Every input a fuzz target ever failed on (test/fuzz/NAME/), run again.
        for target in test/fuzz/*/; do
            name=$(basename "$target")
            run_suite "asan_fuzz_$name" "build-san/replay_$name" "$target"
        done
    else
        echo "FAIL sanitizer build (see $LOG/sanitize-build.log)" | tee "$LOG/sanitize-result.log"
    fi
fi

# ThreadSanitizer over extract's decoder, consumer and commit threads.
if [ "${ONNXTL_SKIP_SANITIZE:-0}" != 1 ] && [ "$B" = build ]; then
    if make -s SANITIZE=thread build-tsan/onnxtl >"$LOG/tsan-build.log" 2>&1; then
        run_suite tsan_extract $PY test/tsan_tests.py build-tsan/onnxtl "$SHARED"
    else
        echo "FAIL ThreadSanitizer build (see $LOG/tsan-build.log)" | tee "$LOG/tsan-result.log"
    fi
fi

passed=$(cat "$LOG"/*.log | grep -c '^PASS')
failed=$(cat "$LOG"/*.log | grep -c '^FAIL')
skipped=$(cat "$LOG"/*.log | grep -c '^SKIP')
echo
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
