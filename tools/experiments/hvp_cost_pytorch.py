"""The cost of an exact Hessian-vector product in PyTorch itself, for comparison with `blocksharp bench hvp`:
a GPT-2 block stack shaped like gpt2-small-cpu (8 layers, dim 256, 8 heads, seq 128, byte vocab, tied head,
batch 4, one thread), HVP by double backward on a retained gradient graph, over one plain gradient. Also
the matrix-product time of each (torch.profiler): reverse-over-reverse and forward-over-reverse both need
about twice the gradient's matrix products (6 against 3 per linear layer): the floor of that part of
the ratio; blocksharp's curvature_ops cut the rest (src/models/curvature_ops.h).
Usage: /usr/bin/python3 hvp_cost_pytorch.py"""
import math
import time

import torch
torch.set_num_threads(1)
torch.manual_seed(0)
L,D,H,T,B,V=8,256,8,128,4,256
class Blk(torch.nn.Module):
    def __init__(s):
        super().__init__()
        s.ln1=torch.nn.LayerNorm(D); s.ln2=torch.nn.LayerNorm(D)
        s.q=torch.nn.Linear(D,D); s.k=torch.nn.Linear(D,D); s.v=torch.nn.Linear(D,D); s.o=torch.nn.Linear(D,D)
        s.f1=torch.nn.Linear(D,4*D); s.f2=torch.nn.Linear(4*D,D)
    def forward(s,x):
        h=s.ln1(x)
        q=s.q(h).view(B,T,H,D//H).transpose(1,2); k=s.k(h).view(B,T,H,D//H).transpose(1,2); v=s.v(h).view(B,T,H,D//H).transpose(1,2)
        a=q@k.transpose(-2,-1)/math.sqrt(D//H)
        a=a.masked_fill(torch.triu(torch.ones(T,T,dtype=torch.bool),1),float('-inf'))
        y=(torch.softmax(a,-1)@v).transpose(1,2).reshape(B,T,D)
        x=x+s.o(y)
        return x+s.f2(torch.nn.functional.gelu(s.f1(s.ln2(x)),approximate='tanh'))
wte=torch.nn.Embedding(V,D); wpe=torch.nn.Embedding(T,D); blks=torch.nn.ModuleList([Blk() for _ in range(L)]); lnf=torch.nn.LayerNorm(D)
params=list(wte.parameters())+list(wpe.parameters())+list(blks.parameters())+list(lnf.parameters())
x=torch.randint(0,V,(B,T)); y=torch.randint(0,V,(B,T))
def loss():
    h=wte(x)+wpe(torch.arange(T))
    for b in blks: h=b(h)
    logits=lnf(h)@wte.weight.t()
    return torch.nn.functional.nll_loss(torch.log_softmax(logits.view(-1,V),-1),y.view(-1))
def med(f,n=5):
    ts=[]
    for _ in range(n):
        t=time.perf_counter(); f(); ts.append(time.perf_counter()-t)
    return sorted(ts)[n//2]
tg=med(lambda: torch.autograd.grad(loss(),params))
l=loss(); g=torch.autograd.grad(l,params,create_graph=True); v=[torch.randn_like(p) for p in params]
th=med(lambda: torch.autograd.grad(g,params,v,retain_graph=True))
from torch.profiler import profile, ProfilerActivity


def mm_seconds(f):
    with profile(activities=[ProfilerActivity.CPU]) as p:
        f()
    return sum(e.self_cpu_time_total for e in p.key_averages() if e.key in ("aten::mm", "aten::addmm", "aten::bmm")) / 1e6


mh = mm_seconds(lambda: torch.autograd.grad(g, params, v, retain_graph=True))
mg = mm_seconds(lambda: torch.autograd.grad(loss(), params))
print('{"grad_seconds": %.4f, "hvp_seconds": %.4f, "hvp_over_grad": %.3f, "matmul_hvp_over_matmul_grad": %.3f}'
      % (tg, th, th / tg, mh / mg))
