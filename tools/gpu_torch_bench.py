#!/usr/bin/python3
"""PyTorch peers for tools/gpu_bench.sh, on the same GPU in the same run.

  backbone ARCH PRECISION BATCH [compile]   img/s of the backbone up to the head input
                                            (eager, channels_last; or torch.compile)
  pipeline DATA_DIR BATCH WORKERS           ImageFolder + transforms + DataLoader + fp16 model
  mkjpegs SRC_DIR OUT_DIR COUNT             500x375 JPEGs made from the photos in SRC_DIR
  fithead ROWS DIM                          seconds for one epoch of the VGG16 MLP head (DIM-4096-4096-2,
                                            dropout 0.5, Adam lr 1e-5, batch 16, fp32) on ROWS random rows
                                            held on the GPU
"""
import os
import sys
import time

import torch
import torchvision


def backbone(arch):
    torch.manual_seed(0)
    m = getattr(torchvision.models, arch)()
    if arch.startswith("resnet"):
        m.fc = torch.nn.Identity()
    else:
        m.classifier = torch.nn.Identity()
    return m.eval()


def dtype_of(prec):
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = prec == "tf32"
    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(prec, torch.float32)


def bench_backbone(arch, prec, batch, compiled):
    dt = dtype_of(prec)
    m = backbone(arch).cuda().to(dt).to(memory_format=torch.channels_last)
    if compiled:
        m = torch.compile(m)
    x = torch.randn(batch, 3, 224, 224, device="cuda", dtype=dt).to(memory_format=torch.channels_last)
    with torch.inference_mode():
        for _ in range(3):
            m(x)
        torch.cuda.synchronize()
        iters, start = 10, time.time()
        for _ in range(iters):
            m(x)
        torch.cuda.synchronize()
    return batch * iters / (time.time() - start)


def bench_pipeline(data, batch, workers):
    t = torchvision.transforms
    tf = t.Compose([t.Resize(256), t.CenterCrop(224), t.ToTensor(), t.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    ds = torchvision.datasets.ImageFolder(data, tf)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, num_workers=workers, pin_memory=True)
    m = backbone("resnet50").cuda().half().to(memory_format=torch.channels_last)
    start, n = time.time(), 0
    with torch.inference_mode():
        for x, _ in loader:
            m(x.cuda(non_blocking=True).half().to(memory_format=torch.channels_last)).float().cpu()
            n += x.shape[0]
    return n / (time.time() - start)


def bench_fit_head(rows, dim, batch=16):
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.manual_seed(0)
    x = torch.randn(rows, dim, device="cuda")
    y = torch.randint(0, 2, (rows,), device="cuda")
    nn = torch.nn
    head = nn.Sequential(nn.Linear(dim, 4096), nn.ReLU(), nn.Dropout(0.5), nn.Linear(4096, 4096), nn.ReLU(),
                         nn.Dropout(0.5), nn.Linear(4096, 2)).cuda()
    opt = torch.optim.Adam(head.parameters(), lr=1e-5)

    def step(idx):
        loss = torch.nn.functional.cross_entropy(head(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    for s in range(0, 5 * batch, batch):
        step(torch.arange(s, s + batch, device="cuda"))
    torch.cuda.synchronize()
    start = time.time()
    perm = torch.randperm(rows, device="cuda")
    for s in range(0, rows, batch):
        step(perm[s:s + batch])
    torch.cuda.synchronize()
    return time.time() - start


def make_jpeg(job):
    from PIL import Image
    src, dst = job
    Image.open(src).convert("RGB").resize((500, 375)).save(dst, quality=90)


def make_jpegs(src, out, count):
    import multiprocessing
    photos = sorted(os.path.join(r, f) for r, _, fs in os.walk(src) for f in fs if f.endswith(".jpg"))
    for cls in ("cat", "dog"):
        os.makedirs(os.path.join(out, cls), exist_ok=True)
    jobs = [(photos[i % len(photos)], os.path.join(out, "cat" if i % 2 else "dog", f"{i}.jpg")) for i in range(count)]
    with multiprocessing.Pool() as pool:
        pool.map(make_jpeg, jobs, chunksize=64)


def main():
    cmd = sys.argv[1]
    if cmd == "backbone":
        print(f"{bench_backbone(sys.argv[2], sys.argv[3], int(sys.argv[4]), len(sys.argv) > 5):.0f}")
    elif cmd == "fithead":
        print(f"{bench_fit_head(int(sys.argv[2]), int(sys.argv[3])):.2f}")
    elif cmd == "pipeline":
        print(f"{bench_pipeline(sys.argv[2], int(sys.argv[3]), int(sys.argv[4])):.0f}")
    else:
        make_jpegs(sys.argv[2], sys.argv[3], int(sys.argv[4]))


if __name__ == "__main__":
    main()
