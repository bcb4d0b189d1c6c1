// ONNX Runtime (onnxruntime-node, CPU) throughput on a synthetic input, as a
// benchmark peer: after one warm-up run, ITERS runs of a BATCH; prints img/s.
// usage: node ort_bench.js MODEL BATCH ITERS THREADS [CxHxW, default 3x224x224]
const path = require('path');
const ort = require(path.join(__dirname, '..', 'build', 'ort', 'node_modules', 'onnxruntime-node'));

(async () => {
  const [model, batch, iters, threads] = [process.argv[2], +process.argv[3], +process.argv[4], +process.argv[5]];
  const s = await ort.InferenceSession.create(model, {intraOpNumThreads: threads, interOpNumThreads: 1});
  const [c, h, w] = process.argv[6] ? process.argv[6].split('x').map(Number) : [3, 224, 224];
  const data = new Float32Array(batch * c * h * w);
  for (let i = 0; i < data.length; i++) data[i] = Math.sin(i) * 2;
  const feeds = {[s.inputNames[0]]: new ort.Tensor('float32', data, [batch, c, h, w])};
  await s.run(feeds);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < iters; i++) await s.run(feeds);
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log((batch * iters / secs).toFixed(2));
})();
