// ONNX Runtime (onnxruntime-node, CPU) as a benchmark peer: reads float32
// NCHW batches from stdin, runs the model, writes the first output to stdout.
// usage: node ort_features.js MODEL BATCH THREADS
const fs = require('fs');
const path = require('path');
const ort = require(path.join(__dirname, '..', 'build', 'ort', 'node_modules', 'onnxruntime-node'));

function readExactly(n) {
  const buf = Buffer.alloc(n);
  let got = 0;
  while (got < n) {
    const r = fs.readSync(0, buf, got, n - got, null);
    if (r === 0) return got === 0 ? null : buf.subarray(0, got);
    got += r;
  }
  return buf;
}

(async () => {
  const [model, batch, threads] = [process.argv[2], +process.argv[3], +process.argv[4]];
  const s = await ort.InferenceSession.create(model, {intraOpNumThreads: threads, interOpNumThreads: 1});
  const per = 3 * 224 * 224 * 4;
  for (;;) {
    const hdr = readExactly(4);
    if (!hdr) break;
    const n = hdr.readUInt32LE(0);
    const data = readExactly(n * per);
    const x = new ort.Tensor('float32', new Float32Array(data.buffer, data.byteOffset, n * 3 * 224 * 224), [n, 3, 224, 224]);
    const out = await s.run({[s.inputNames[0]]: x});
    const y = out[s.outputNames[0]].data;
    fs.writeSync(1, Buffer.from(y.buffer, y.byteOffset, y.byteLength));
  }
})().catch(e => { console.error(e); process.exit(1); });
