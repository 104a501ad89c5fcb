"""PyTorch reference for tl's benchmarks: the standard torchvision fine-tuning loop on CPU.

Freezes the same layers as tl's Keras-indexed --freeze (MobileNetV2 --freeze 100, ResNet50 --freeze 140) and runs
BatchNorm in inference mode, as tl's default --bn frozen does. Prints one JSON document.

  /usr/bin/python3 bench/torch_reference.py step --model mobilenet_v2 --batch-size 16 --steps 5
  /usr/bin/python3 bench/torch_reference.py finetune --model mobilenet_v2 --data DIR --epochs 10 --batch-size 16
  /usr/bin/python3 bench/torch_reference.py finetune --model mobilenet_v2 --data DIR --cache-prefix   (the caching peer)
  /usr/bin/python3 bench/torch_reference.py extract --model resnet50 --batch-size 16 --steps 5
  /usr/bin/python3 bench/torch_reference.py tailstep --model resnet50 --steps 10 --profile   (the caching peer's step)
  /usr/bin/python3 bench/torch_reference.py gemm --shapes "1024,1024,1024;784,4608,512"
"""
import argparse
import json
import resource
import time

import torch
import torchvision
from torchvision import transforms


def build(name, classes, freeze=True):
    """The torchvision model with a new head and the same frozen prefix as tl's Keras-indexed freeze point."""
    if name == "mobilenet_v2":
        model = torchvision.models.mobilenet_v2(weights=None)
        model.classifier = torch.nn.Sequential(torch.nn.Dropout(0.2), torch.nn.Linear(1280, classes))
        # Keras index 100 is block_11_expand_relu: the stem, blocks 0-10 and block 11's expand conv + BN are frozen.
        frozen = list(model.features[:12]) + [model.features[12].conv[0][0], model.features[12].conv[0][1]]
    elif name == "resnet50":
        model = torchvision.models.resnet50(weights=None)
        model.fc = torch.nn.Linear(2048, classes)
        # Keras index 140 is conv4_block6_3_bn: everything up to conv4_block6's third conv is frozen.
        block = model.layer3[5]
        frozen = [model.conv1, model.bn1, model.layer1, model.layer2] + list(model.layer3[:5]) + [block.conv1, block.bn1, block.conv2, block.bn2, block.conv3]
    else:
        raise SystemExit(f"unknown model {name}")
    for module in frozen if freeze else []:
        for p in module.parameters():
            p.requires_grad = False
    return model


def train_mode(model):
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()


def step_benchmark(args):
    model = build(args.model, 5, freeze=not args.freeze_none)
    train_mode(model)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    x = torch.randn(args.batch_size, 3, args.size, args.size)
    y = torch.randint(0, 5, (args.batch_size,))

    def step():
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

    step()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    seconds = time.perf_counter() - start
    return {"model": args.model, "batch_size": args.batch_size, "img_per_s": args.steps * args.batch_size / seconds}


def finetune_benchmark(args):
    tf = transforms.Compose([
        transforms.Resize(args.size),
        transforms.CenterCrop(args.size),
        transforms.Grayscale(3),
        transforms.ToTensor(),
        transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    ])
    data = torchvision.datasets.ImageFolder(args.data, transform=tf)
    g = torch.Generator().manual_seed(42)
    n_val = int(len(data) * 0.15)
    n_test = int(len(data) * 0.15)
    train, val, _ = torch.utils.data.random_split(data, [len(data) - n_val - n_test, n_val, n_test], generator=g)
    train_loader = torch.utils.data.DataLoader(train, batch_size=args.batch_size, shuffle=True, num_workers=0)
    val_loader = torch.utils.data.DataLoader(val, batch_size=args.batch_size, num_workers=0)
    model = build(args.model, len(data.classes))
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=args.lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    history = []
    start = time.perf_counter()
    if args.cache_prefix:
        return cached_finetune(args, model, opt, loss_fn, train, val, data, start)
    for epoch in range(1, args.epochs + 1):
        train_mode(model)
        loss_sum, seen = 0.0, 0
        for x, y in train_loader:
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            loss_sum += loss.item() * len(y)
            seen += len(y)
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in val_loader:
                correct += (model(x).argmax(1) == y).sum().item()
        history.append({"epoch": epoch, "loss": loss_sum / max(1, seen), "val_accuracy": correct / max(1, len(val)), "seconds": time.perf_counter() - start})
    return {"model": args.model, "images": len(data), "epochs": args.epochs, "seconds": time.perf_counter() - start, "history": history}


def mobilenet_v2_split(model):
    """MobileNetV2 at Keras --freeze 100 as (prefix, tail): the prefix gives block 11's input r and its expand-BN output
    e (the two tensors that cross tl's cut); the tail finishes block 11 (ReLU6, depthwise, project, BN, residual add)
    and runs blocks 12-16, the last conv, pooling and the classifier."""
    block = model.features[12]
    expand = block.conv[0]

    def prefix(x):
        r = model.features[:12](x)
        return r, expand[1](expand[0](r))

    def tail(r, e):
        h = block.conv[3](block.conv[2](block.conv[1](expand[2](e))))
        h = r + h if block.use_res_connect else h
        h = model.features[13:](h)
        return model.classifier(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(h, 1), 1))

    return prefix, tail


def resnet50_split(model):
    """ResNet50 at Keras --freeze 140 as (prefix, tail): the prefix gives conv4_block6's shortcut input and its third
    conv's output (the two tensors that cross tl's cut); the tail applies that block's last BatchNorm, the residual add
    and ReLU, then conv5, pooling and the classifier."""
    block = model.layer3[5]

    def prefix(x):
        x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
        x = model.layer3[:5](model.layer2(model.layer1(x)))
        h = block.relu(block.bn2(block.conv2(block.relu(block.bn1(block.conv1(x))))))
        return x, block.conv3(h)

    def tail(x, c):
        h = model.layer4(block.relu(block.bn3(c) + x))
        return model.fc(torch.flatten(model.avgpool(h), 1))

    return prefix, tail


def split(name, model):
    return {"mobilenet_v2": mobilenet_v2_split, "resnet50": resnet50_split}[name](model)


def tail_step_benchmark(args):
    """The cached train step alone, as the caching loop runs it: the tail trained on kept boundary tensors (the prefix
    run once under no_grad), Adam, BatchNorm in inference mode. With --profile, torch.profiler's self CPU time per
    operator over the timed steps."""
    device = torch.device(args.device)
    model = build(args.model, 5).to(device)
    prefix, tail = split(args.model, model)
    model.eval()
    with torch.no_grad():
        boundary = prefix(torch.randn(args.batch_size, 3, args.size, args.size, device=device))
    train_mode(model)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    y = torch.randint(0, 5, (args.batch_size,), device=device)

    def step():
        opt.zero_grad()
        loss = loss_fn(tail(*boundary), y)
        loss.backward()
        opt.step()

    step()
    step()
    sync(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync(device)
    seconds = time.perf_counter() - start
    result = {"model": args.model, "batch_size": args.batch_size, "device": args.device, "torch": torch.__version__, "ms_per_step": 1000 * seconds / args.steps, "img_per_s": args.steps * args.batch_size / seconds}
    if args.profile:
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(args.steps):
                step()
        ops = [{"op": e.key, "ms": e.self_cpu_time_total / 1000 / args.steps, "calls": e.count / args.steps} for e in prof.key_averages()]
        ops.sort(key=lambda o: -o["ms"])
        result["ops"] = [o for o in ops if o["ms"] > 0][:15]
        result["profiled_ms_total"] = sum(o["ms"] for o in ops)
    return result


def gemm_benchmark(args):
    """Matrix products at the given M,K,N shapes: GFLOP/s of torch.mm (best of --steps)."""
    out = []
    for shape in args.shapes.split(";"):
        m, k, n = (int(v) for v in shape.split(","))
        a, b = torch.randn(m, k), torch.randn(k, n)
        torch.mm(a, b)
        best = float("inf")
        for _ in range(args.steps):
            t = time.perf_counter()
            torch.mm(a, b)
            best = min(best, time.perf_counter() - t)
        out.append({"shape": [m, k, n], "gflops": 2 * m * k * n / best / 1e9})
    return {"gemm": out}


def cached_finetune(args, model, opt, loss_fn, train, val, data, start):
    """The loop an expert writes when the prefix is frozen: run it once over train and validation images under no_grad
    (model in eval mode), keep both boundary tensors, then train and validate the tail on them every epoch."""
    prefix, tail = split(args.model, model)

    def kept(subset):
        model.eval()
        rs, es, ys = [], [], []
        with torch.no_grad():
            for x, y in torch.utils.data.DataLoader(subset, batch_size=args.batch_size, num_workers=0):
                r, e = prefix(x)
                rs.append(r)
                es.append(e)
                ys.append(y)
        return torch.cat(rs), torch.cat(es), torch.cat(ys)

    tr, te, ty = kept(train)
    vr, ve, vy = kept(val)
    prefix_seconds = time.perf_counter() - start
    history = []
    g = torch.Generator().manual_seed(0)
    for epoch in range(1, args.epochs + 1):
        train_mode(model)
        order = torch.randperm(len(ty), generator=g)
        loss_sum = 0.0
        for i in range(0, len(ty), args.batch_size):
            idx = order[i:i + args.batch_size]
            opt.zero_grad()
            loss = loss_fn(tail(tr[idx], te[idx]), ty[idx])
            loss.backward()
            opt.step()
            loss_sum += loss.item() * len(idx)
        model.eval()
        correct = 0
        with torch.no_grad():
            for i in range(0, len(vy), args.batch_size):
                correct += (tail(vr[i:i + args.batch_size], ve[i:i + args.batch_size]).argmax(1) == vy[i:i + args.batch_size]).sum().item()
        history.append({"epoch": epoch, "loss": loss_sum / max(1, len(ty)), "val_accuracy": correct / max(1, len(vy)), "seconds": time.perf_counter() - start})
    return {"model": args.model, "images": len(data), "epochs": args.epochs, "cached": True, "prefix_seconds": prefix_seconds,
            "seconds": time.perf_counter() - start, "history": history}


def extract_benchmark(args):
    """Pooled features (no classifier) in inference mode, as tl extract computes them."""
    if args.model == "mobilenet_v2":
        net = torchvision.models.mobilenet_v2(weights=None)
        body = torch.nn.Sequential(net.features, torch.nn.AdaptiveAvgPool2d(1))
    elif args.model == "resnet50":
        net = torchvision.models.resnet50(weights=None)
        body = torch.nn.Sequential(*list(net.children())[:-1])
    elif args.model == "vgg16":
        net = torchvision.models.vgg16(weights=None)
        body = torch.nn.Sequential(net.features, torch.nn.AdaptiveAvgPool2d(1))
    else:
        raise SystemExit(f"unknown model {args.model}")
    device = torch.device(args.device)
    body.eval().to(device)
    x = torch.randn(args.batch_size, 3, args.size, args.size, device=device)
    with torch.no_grad():
        body(x)
        sync(device)
        start = time.perf_counter()
        for _ in range(args.steps):
            body(x)
        sync(device)
        seconds = time.perf_counter() - start
    return {"model": args.model, "batch_size": args.batch_size, "device": args.device, "torch": torch.__version__, "img_per_s": args.steps * args.batch_size / seconds}


def sync(device):
    """Waits for the device's queued work (a CUDA timing must not stop the clock before the kernels end)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["step", "finetune", "extract", "tailstep", "gemm"])
    parser.add_argument("--model", default="mobilenet_v2")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--data")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--freeze-none", action="store_true", help="train every layer (tl's --freeze 0)")
    parser.add_argument("--profile", action="store_true", help="tailstep: torch.profiler's time per operator")
    parser.add_argument("--shapes", default="1024,1024,1024", help="gemm: M,K,N;M,K,N;...")
    parser.add_argument("--device", default="cpu", help="extract, tailstep: cpu or cuda")
    parser.add_argument("--cache-prefix", action="store_true", help="finetune: run the frozen prefix once and train the tail on its kept outputs")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    result = {"step": step_benchmark, "finetune": finetune_benchmark, "extract": extract_benchmark, "tailstep": tail_step_benchmark, "gemm": gemm_benchmark}[args.mode](args)
    # Peak resident memory of this process (Linux reports kilobytes).
    max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result.update({"torch": torch.__version__, "threads": torch.get_num_threads(), "max_rss_bytes": max_rss})
    print(json.dumps(result))


if __name__ == "__main__":
    main()
