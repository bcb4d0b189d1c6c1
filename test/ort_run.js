// ONNX Runtime (onnxruntime-node, CPU) as a reference for many small models
// in one process: reads a JSON list of cases, each
//   {"model": PATH, "inputs": {NAME: IN.npy}, "outputs": {NAME: OUT.npy}},
// runs each model and writes the named outputs as .npy files.  A case that
// ONNX Runtime refuses gets OUT.npy.err holding its message.
// usage: node ort_run.js CASES.json
const fs = require('fs');
const path = require('path');
const ort = require(path.join(__dirname, '..', 'build', 'ort', 'node_modules', 'onnxruntime-node'));

// The .npy dtypes these tests use, as ONNX Runtime's tensor types.
const TYPES = {'<f4': ['float32', Float32Array], '<f8': ['float64', Float64Array],
               '<i8': ['int64', BigInt64Array], '<i4': ['int32', Int32Array], '|b1': ['bool', Uint8Array]};

function readNpy(file) {
  const buf = fs.readFileSync(file);
  const headerLen = buf.readUInt16LE(8);
  const header = buf.toString('latin1', 10, 10 + headerLen);
  const descr = /'descr': *'([^']+)'/.exec(header)[1];
  if (/'fortran_order': *True/.test(header)) throw new Error(`${file}: Fortran order is not supported`);
  const dims = /'shape': *\(([^)]*)\)/.exec(header)[1].split(',').filter(s => s.trim()).map(Number);
  const [type, Array] = TYPES[descr] || [];
  if (!type) throw new Error(`${file}: dtype ${descr} is not supported`);
  const body = buf.subarray(10 + headerLen);
  const data = new Array(body.buffer.slice(body.byteOffset, body.byteOffset + body.length));
  return new ort.Tensor(type, data, dims);
}

function writeNpy(file, tensor) {
  const descr = Object.keys(TYPES).find(k => TYPES[k][0] === tensor.type);
  if (!descr) throw new Error(`output type ${tensor.type} is not supported`);
  const shape = tensor.dims.length === 1 ? `${tensor.dims[0]},` : tensor.dims.join(', ');
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${shape}), }`;
  header += ' '.repeat(63 - ((header.length + 10) % 64)) + '\n';
  const pre = Buffer.alloc(10);
  pre.write('\x93NUMPY', 0, 'latin1');
  pre.writeUInt8(1, 6);
  pre.writeUInt8(0, 7);
  pre.writeUInt16LE(header.length, 8);
  const data = tensor.data;
  fs.writeFileSync(file, Buffer.concat([pre, Buffer.from(header, 'latin1'),
                                        Buffer.from(data.buffer, data.byteOffset, data.byteLength)]));
}

(async () => {
  const cases = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
  for (const c of cases) {
    try {
      const s = await ort.InferenceSession.create(c.model, {intraOpNumThreads: 1, graphOptimizationLevel: 'disabled'});
      const feeds = {};
      for (const [name, file] of Object.entries(c.inputs)) feeds[name] = readNpy(file);
      const out = await s.run(feeds, Object.keys(c.outputs));
      for (const [name, file] of Object.entries(c.outputs)) writeNpy(file, out[name]);
    } catch (e) {
      for (const file of Object.values(c.outputs)) fs.writeFileSync(file + '.err', String(e.message || e));
    }
  }
})();
