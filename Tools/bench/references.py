"""PyTorch references for side-by-side benchmarks, one builder per module id.

Each builder takes (channels C, map side S) and returns a `Built`: a no-argument forward on a
random input of the standard shape (1×C×S×S for 2D modules, 1×S²×C tokens for sequence
modules, as `attend bench` feeds them), the `--set key=value` pairs that give `attend bench`
the same config, what the reference is, and a note when the comparison is not like for like.

The construction follows the parity-fixture scripts in Tools/reference/ (which are imported
here, not copied: their classes, their stubs for GitHub-only code and the env vars that name
the checkouts). A reference whose checkout is not named raises `Unavailable` with the script's
own message; the benchmark row then says "reference unavailable".

GitHub-only references and their env vars (commits as in the fixture scripts):
  FA_REF_ATTENTION_MODULE             Jongchan/attention-module (459efad)            cbam
  FA_REF_EFFICIENT_ATTENTION          cmsflash/efficient-attention (46a5f9e)         efficient-attention
  FA_REF_EMANET                       XiaLiPKU/EMANet (f09ffac)                      em-attention
  FA_REF_YET_ANOTHER_MOBILENET_SERIES meijieru/yet_another_mobilenet_series (6715961) autonl
  FA_REF_FANET                        feinanshan/FANet (d4e5e3c)                     fast-attention
  FA_REF_OPENSEG                      openseg-group/openseg.pytorch (aefc755)        interlaced-sparse
  FA_REF_FAST_TRANSFORMERS            pytorch-fast-transformers-0.4.0 sdist          linear-transformer, clustered
  FA_REF_SYNTHESIZER                  leaderj1001/Synthesizer-... (3ee5829)          synthesizer
  FA_REF_SET_TRANSFORMER              juho-lee/set_transformer (73432c6)             set-transformer
  FA_REF_SLIM                         google-research slim_performer/pytorch files   slim-performer
  FA_REF_PAM (optional)               SamuelJoutard/Permutohedral_attention_module   permutohedral
                                      (without it: the fixture's pure-Python lattice transliteration)
  FA_REF_JUKEBOX                      openai/jukebox (08efbbc)                       jukebox
  FA_REF_SMYRF                        giannisdaras/smyrf (bbbc82e)                   smyrf
  FA_REF_INFORMER                     zhouhaoyi/Informer2020 (29f2a73)               informer
  FA_REF_LMTOOL                       IDSIA/lmtool-fwms src folder (52ada3d)         fast-weights

Usage as a library:  import references; b = references.build("non-local", 64, 64); b.forward()
"""
import importlib.util
import math
import os
import sys
from dataclasses import dataclass, field
from typing import Callable, Dict, List

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE_DIR = os.path.join(HERE, "..", "reference")


class Unavailable(Exception):
    """The reference cannot be built here (its checkout is not named, or a package is missing)."""


@dataclass
class Built:
    forward: Callable[[], object]
    settings: List[str]
    reference: str
    note: str = ""
    kind: str = "2D"                    # "2D": 1×C×S×S input; "seq": 1×S²×C tokens
    keep: list = field(default_factory=list)   # objects kept alive with the forward


_loaded: Dict[str, object] = {}


def fixture(name: str):
    """Tools/reference/<name>.py as a module (its main() is not run). A script that exits at
    import (env var missing) raises Unavailable with its message."""
    if name in _loaded:
        return _loaded[name]
    path = os.path.abspath(os.path.join(FIXTURE_DIR, name + ".py"))
    if FIXTURE_DIR not in sys.path:
        sys.path.insert(0, os.path.abspath(FIXTURE_DIR))       # for their `import common`
    spec = importlib.util.spec_from_file_location("fa_fixture_" + name, path)
    mod = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(mod)
    except SystemExit as e:
        raise Unavailable(str(e.code)) from None
    except ImportError as e:
        raise Unavailable(f"{name}.py: {e}") from None
    _loaded[name] = mod
    return mod


def call_loader(fn):
    """A fixture's load function that exits when its env var is missing."""
    try:
        return fn()
    except SystemExit as e:
        raise Unavailable(str(e.code)) from None


def kv(**settings) -> List[str]:
    def text(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (list, tuple)):
            return ",".join(text(i) for i in v)
        return str(v)
    return [f"{k}={text(v)}" for k, v in settings.items()]


def map_input(c, s):
    return torch.randn(1, c, s, s, generator=torch.Generator().manual_seed(s))


def seq_input(c, s):
    return torch.randn(1, s * s, c, generator=torch.Generator().manual_seed(s))


# --- 2D modules --------------------------------------------------------------------------------

def non_local(c, s):
    from mmcv.cnn import NonLocal2d
    m = NonLocal2d(c, reduction=2, use_scale=True, mode="embedded_gaussian").eval()
    x = map_input(c, s)
    return Built(lambda: m(x), kv(in_channels=c, reduction=2, use_scale=True, mode="embedded_gaussian"),
                 "mmcv NonLocal2d", keep=[m])


def cbam(c, s):
    f = fixture("cbam")
    m = f.CBAM(gate_channels=c, reduction_ratio=16, pool_types=["avg", "max"], no_spatial=False).eval()
    x = map_input(c, s)
    return Built(lambda: m(x), kv(gate_channels=c, reduction_ratio=16, pool_types="avg,max", no_spatial=False),
                 "attention-module CBAM", keep=[m])


def criss_cross(c, s):
    f = fixture("criss_cross")
    m = f.cc.CrissCrossAttention(c).eval()
    x = map_input(c, s)
    return Built(lambda: m(x), kv(in_channels=c, recurrence=1), "mmcv CrissCrossAttention (pure PyTorch file)",
                 keep=[m])


def global_context(c, s):
    from mmcv.cnn import ContextBlock
    m = ContextBlock(c, ratio=1 / 4, pooling_type="att", fusion_types=("channel_add",)).eval()
    x = map_input(c, s)
    return Built(lambda: m(x), kv(in_channels=c, ratio=0.25, pooling_type="att", fusion_types="channel_add"),
                 "mmcv ContextBlock", keep=[m])


def efficient_attention(c, s):
    f = fixture("efficient_attention")
    m = f.EfficientAttention(in_channels=c, key_channels=c, head_count=1, value_channels=c).eval()
    x = map_input(c, s)
    return Built(lambda: m(x), kv(in_channels=c, key_channels=c, head_count=1, value_channels=c),
                 "cmsflash EfficientAttention", keep=[m])


def em_attention(c, s):
    f = fixture("em_attention")
    m = f.network.EMAU(c=c, k=8, stage_num=3).eval()
    x = map_input(c, s)
    return Built(lambda: m(x)[0], kv(c=c, k=8, stage_num=3), "EMANet EMAU", keep=[m])


def autonl(c, s):
    f = fixture("autonl")
    m = f.port.Nonlocal(n_feature=c, nl_c=1.0, nl_s=1).eval()
    x = map_input(c, s)

    def forward():
        # The fixture's tf_non_local without its self-check (which evaluates both associations):
        # the association TF picks, f / (H·W), x + BN(dwconv(f)).
        n, cc, h, w = x.shape
        st = m.nl_s
        xr = x[:, :, ::st, ::st]
        ct = int(m.nl_c * cc)
        theta, phi, g = x[:, :ct], xr[:, :ct], xr
        red = (h // st) * (w // st)
        if (h * w) * red * cc * (1 + m.nl_c) < (h * w) * cc ** 2 * m.nl_c + red * cc ** 2 * m.nl_c:
            fx = torch.einsum("nabcd,nicd->niab", torch.einsum("niab,nicd->nabcd", theta, phi), g)
        else:
            fx = torch.einsum("nij,nihw->njhw", torch.einsum("nihw,njhw->nij", phi, g), theta)
        return x + m.bn(m.depthwise_conv(fx / (h * w)))
    return Built(forward, kv(n_feature=c, nl_c=1.0, nl_s=1),
                 "TF AutoNL math on the meijieru Nonlocal port (Tools/reference/autonl.py)", keep=[m])


def fast_attention(c, s):
    f = fixture("fast_attention")
    m = f.fanet.FastAttModule(c, out_chan=128, norm_layer=f.fanet.BatchNorm2d).eval()
    n = s * s
    m.latlayer3.register_forward_pre_hook(lambda mod, inp: (inp[0] / n,))       # the paper's 1/n
    x = map_input(c, s)
    return Built(lambda: m(x, None, up_flag=False, smf_flag=True), kv(in_chan=c, out_chan=128),
                 "FANet FastAttModule (1/n restored)", keep=[m])


def interlaced_sparse(c, s):
    f = fixture("interlaced_sparse")
    ref = call_loader(f.load_reference)
    m = ref.ISA_Block(in_channels=c, key_channels=c // 2, value_channels=c, out_channels=c,
                      down_factor=[8, 8], bn_type="torchbn").eval()
    x = map_input(c, s)
    return Built(lambda: m(x), kv(in_channels=c, key_channels=c // 2, value_channels=c, out_channels=c,
                                  down_factor=[8, 8], bn_type="torchbn"), "openseg ISA_Block", keep=[m])


def axial(c, s):
    from axial_attention import AxialAttention
    m = AxialAttention(dim=c, num_dimensions=2, heads=8, dim_index=1, sum_axial_out=True).eval()
    x = map_input(c, s)
    return Built(lambda: m(x), kv(dim=c, num_dimensions=2, heads=8, dim_index=1, sum_axial_out=True),
                 "axial-attention 0.6.1", keep=[m])


def permutohedral(c, s):
    f = fixture("permutohedral")
    cfg = dict(in_f=c, filt_f=3, out_f=max(c // 2, 1), n_split=2)
    m = f.PAM2d(**cfg).eval()
    with torch.no_grad():
        m.scaling_spatial.copy_(torch.full((1, 2, 1, 1), 0.3))
    x = map_input(c, s)
    path = os.environ.get("FA_REF_PAM")
    if path:
        pl = f.reference_lattice(path)
        lat, what = (lambda a, b: pl.apply(a.contiguous(), b.contiguous())), \
            "PAM2d with the reference's own PermutohedralLattice (patched to CPU)"
        note = "reference lattice is CUDA code run on the CPU with a dense 2^24-slot hash table (fixed cost)"
    else:
        lat, what = f.lattice, "PAM2d with the fixture's lattice transliteration"
        note = "reference lattice is a pure-Python hash-table loop (FA_REF_PAM unset): not a speed reference"

    def forward():
        n, _, h, w = x.shape
        feat = m.features(x)
        desc = m.conv_desc(x).reshape(n, m.n_split * m.out_f, -1)
        out = torch.cat([lat(feat[:, k * m.filt_f:(k + 1) * m.filt_f], desc[:, k * m.out_f:(k + 1) * m.out_f])
                         for k in range(m.n_split)], 1)
        return out.reshape(n, m.out_f * m.n_split, h, w)
    return Built(forward, kv(**cfg), what, note, keep=[m])


def tensor_low_rank(c, s):
    f = fixture("tensor_low_rank")
    m = f.TensorLowRank(c, s, s, rank=16).eval()
    x = map_input(c, s)
    return Built(lambda: m(x), kv(in_channels=c, height=s, width=s, rank=16),
                 "own paper reference (Tools/reference/tensor_low_rank.py)",
                 "reference sums the r rank-1 tensors in a Python loop, as the paper draws it", keep=[m])


def fractal_tanimoto(c, s):
    f = fixture("fractal_tanimoto")
    m = f.FTAttention2D(c, nkeys=c, kernel_size=3, padding=1, nheads=1, ftdepth=5).eval()
    x = map_input(c, s)
    return Built(lambda: m(x), kv(nkeys=c, kernel_size=3, padding=1, nheads=1, ftdepth=5),
                 "ceecnet FTAttention2D, PyTorch transliteration", keep=[m])


def kronecker(c, s):
    from kronecker_attention_pytorch import KroneckerSelfAttention
    m = KroneckerSelfAttention(dim=c, heads=8, dim_heads=32).eval()
    x = map_input(c, s)
    return Built(lambda: m(x), kv(dim=c, heads=8, dim_heads=32), "kronecker-attention-pytorch 0.0.6", keep=[m])


def lambda_layer(c, s):
    from lambda_networks import LambdaLayer
    m = LambdaLayer(dim=c, dim_k=16, r=23, heads=4, dim_out=c, dim_u=1).eval()
    x = map_input(c, s)
    return Built(lambda: m(x), kv(dim=c, dim_k=16, r=23, heads=4, dim_out=c, dim_u=1),
                 "lambda-networks 0.4.0 (local, r=23)", keep=[m])


# --- sequence modules (1 × S² × C tokens) --------------------------------------------------------

def linear_transformer(c, s):
    f = fixture("linear_transformer")
    layer = f.AttentionLayer(f.LinearAttention(c // 4), d_model=c, n_heads=4).eval()
    x = seq_input(c, s)
    l = x.shape[1]
    full, lengths = f.FullMask(l), f.LengthMask(x.new_full((1,), l, dtype=torch.int64))
    return Built(lambda: layer(x, x, x, full, lengths, lengths), kv(d_model=c, n_heads=4, causal=False),
                 "fast-transformers 0.4.0 AttentionLayer(LinearAttention)", kind="seq", keep=[layer])


def performer_favor(c, s):
    f = fixture("performer_favor")
    m = f.FavorAttention(dim=c, heads=8, dim_head=64, nb_features=256).eval()
    x = seq_input(c, s)
    return Built(lambda: m(x), kv(dim=c, heads=8, dim_head=64, nb_features=256),
                 "own FAVOR reference (Tools/reference/performer_favor.py)", kind="seq", keep=[m])


def performer(c, s):
    from performer_pytorch import SelfAttention
    m = SelfAttention(dim=c, heads=8, dim_head=64, causal=False).eval()
    x = seq_input(c, s)
    return Built(lambda: m(x), kv(dim=c, heads=8, dim_head=64, causal=False), "performer-pytorch 1.1.4 SelfAttention",
                 kind="seq", keep=[m])


def memory_compressed(c, s):
    from memory_compressed_attention import MemoryCompressedAttention
    m = MemoryCompressedAttention(dim=c, heads=8, compression_factor=3).eval()
    x = seq_input(c, s)
    return Built(lambda: m(x), kv(dim=c, heads=8, compression_factor=3, causal=False),
                 "memory-compressed-attention 0.0.7", kind="seq", keep=[m])


def synthesizer(c, s):
    f = fixture("synthesizer")
    syn = call_loader(f.load_reference)
    l = s * s
    m = syn.SynthesizerDense(c, l).eval()
    x = seq_input(c, s)
    return Built(lambda: m(x)[0], kv(in_dims=c, sentence_length=l, variant="dense"),
                 "leaderj1001 SynthesizerDense", kind="seq", keep=[m])


def input_independent(c, s):
    f = fixture("input_independent")
    l = s * s
    m = f.InputIndependentAttention(dim=c, seq_len=l, heads=8).eval()
    x = seq_input(c, s)
    return Built(lambda: m(x), kv(dim=c, seq_len=l, heads=8),
                 "own paper reference (Tools/reference/input_independent.py)",
                 "reference re-takes the H×L×L softmax every call; the Swift module precomputes it once",
                 kind="seq", keep=[m])


def linformer(c, s):
    f = fixture("linformer")
    l = s * s
    m = f.LinformerSelfAttention(dim=c, seq_len=l, k=256, heads=8).eval()
    x = seq_input(c, s)
    return Built(lambda: m(x), kv(dim=c, seq_len=l, k=256, heads=8), "linformer 0.2.3 LinformerSelfAttention",
                 kind="seq", keep=[m])


def set_transformer(c, s):
    f = fixture("set_transformer")
    mod = call_loader(f.load_modules)
    m = mod.ISAB(dim_in=c, dim_out=c, num_heads=4, num_inds=16, ln=False).eval()
    x = seq_input(c, s)
    return Built(lambda: m(x), kv(dim_in=c, dim_out=c, num_heads=4, num_inds=16, ln=False),
                 "juho-lee set_transformer ISAB", kind="seq", keep=[m])


def slim_performer(c, s):
    f = fixture("slim_performer")
    m = f.MultiHeadAttention(feature_type="favor+", n_heads=2, hidden_dim=c, compute_type="ps").eval()
    rfs = m.sample_rfs(torch.device("cpu"))
    x = seq_input(c, s)
    return Built(lambda: m.full_forward(x, rfs), kv(feature_type="favor+", n_heads=2, hidden_dim=c, compute_type="ps"),
                 "google-research SLiM MultiHeadAttention.full_forward (ps)",
                 "reference materialises the L×H×M×d prefix-sum tensor (cumsum)", kind="seq", keep=[m])


def random_feature(c, s):
    f = fixture("random_feature")
    m = f.RandomFeatureAttention(embed_dim=c, num_heads=4, num_features=64, causal=True, gate=True).eval()
    x = seq_input(c, s)
    return Built(lambda: m(x), kv(embed_dim=c, num_heads=4, num_features=64, causal=True, gate=True),
                 "own paper reference (Tools/reference/random_feature.py)",
                 "reference runs the gated recurrence one step at a time in Python", kind="seq", keep=[m])


def nystromformer(c, s):
    from transformers import NystromformerConfig
    from transformers.models.nystromformer.modeling_nystromformer import NystromformerSelfAttention
    l = s * s
    heads = max(h for h in range(1, 13) if c % h == 0) if c % 12 else 12
    landmarks = max(d for d in range(1, 65) if l % d == 0)
    cfg = NystromformerConfig(hidden_size=c, num_attention_heads=heads, num_landmarks=landmarks,
                              segment_means_seq_len=l, conv_kernel_size=65, attention_probs_dropout_prob=0.0)
    m = NystromformerSelfAttention(cfg).eval()
    x = seq_input(c, s)
    return Built(lambda: m(x)[0], kv(hidden_size=c, num_attention_heads=heads, num_landmarks=landmarks,
                                     segment_means_seq_len=l, conv_kernel_size=65),
                 "transformers NystromformerSelfAttention", kind="seq", keep=[m])


def star_transformer(c, s):
    f = fixture("star_transformer")
    m = f.load_class()(hidden_size=c, num_layers=2, num_head=4, head_dim=16).eval()
    x = seq_input(c, s)
    mask = torch.ones(1, x.shape[1], dtype=torch.bool)
    return Built(lambda: m(x, mask)[0], kv(hidden_size=c, num_layers=2, num_head=4, head_dim=16),
                 "fastNLP 1.0.1 StarTransformer", kind="seq", keep=[m])


def sparse_transformer(c, s):
    f = fixture("sparse_transformer")
    m = f.SparseTransformerAttention(n_embd=c, heads=4, attn_mode="strided", blocksize=32).eval()
    x = seq_input(c, s)
    masks = m.masks(x.shape[1])
    m.masks = lambda n: masks                 # the mask is built once, outside the timed forward
    return Built(lambda: m(x), kv(n_embd=c, heads=4, attn_mode="strided", blocksize=32),
                 "masked-dense port of openai/sparse_attention (Tools/reference/sparse_transformer.py)",
                 "reference is masked-dense O(N²) (openai's blocksparse op is GPU-only); Swift is block-sparse",
                 kind="seq", keep=[m])


# --- builders added for the remaining modules (A) ---

def scram(c, s):
    f = fixture("scram")
    cfg = dict(in_channels=c, key_channels=max(c // 2, 1), value_channels=c, topk=8, iterations=5)
    m = f.SCRAM(**cfg).eval()
    if s * s > 32 * 32:
        # Measured (1 thread, locked): 0.57 s a forward at 16×16, 2.7 s at 32×32, 11.8 s at 64×64; a
        # compare.py row runs it ≥ 10 times.
        raise Unavailable(f"reference PatchMatch is a pure-Python loop over every query and candidate: "
                          f"11.8 s a forward at 64×64 (2.7 s at 32×32), not a speed reference at {s}×{s}")
    m.set_draws(1, s, s, torch.Generator().manual_seed(0))
    x = map_input(c, s)
    return Built(lambda: m(x), kv(**cfg), "own paper reference (Tools/reference/scram.py)",
                 "reference PatchMatch is a pure-Python loop in float64", keep=[m])


def product_key_memory(c, s):
    from product_key_memory import PKM
    fixture("pkm")                                            # the fixture's imports (colt5-attention) load
    cfg = dict(dim=c, heads=4, num_keys=128, topk=32, dim_head=128)
    m = PKM(**cfg).eval()
    x = seq_input(c, s)
    return Built(lambda: m(x), kv(**cfg), "product-key-memory 0.3.0 PKM", kind="seq", keep=[m])


def bp_transformer(c, s):
    f = fixture("bp_transformer")
    cfg = dict(dim_model=c, h=4, dim_ff=4 * c, n_layers=2, step=4)
    m = f.BPTStack(**cfg).eval()
    x = seq_input(c, s)
    graph = m.graph(x.shape[1])
    m.graph = lambda n: graph                 # the graph is built once, outside the timed forward
    return Built(lambda: m(x), kv(**cfg, triu=True),
                 "PyTorch reference of yzh119/BPT BPTBlock stack (Tools/reference/bp_transformer.py)",
                 "reference is dense masked attention over all 2L-1 graph nodes, O(N²) (BPT's own kernel is "
                 "CUDA-only); Swift is block-sparse over the graph", kind="seq", keep=[m])


def compressive(c, s):
    from compressive_transformer_pytorch.compressive_transformer_pytorch import SelfAttention
    fixture("compressive")
    l = s * s
    cfg = dict(dim=c, seq_len=l, mem_len=l, cmem_len=l // 4, cmem_ratio=4, heads=8)
    m = SelfAttention(**cfg).eval()
    x = seq_input(c, s)
    return Built(lambda: m(x)[0], kv(**cfg), "compressive-transformer-pytorch 0.4.0 SelfAttention (empty memories)",
                 kind="seq", keep=[m])


def reformer(c, s):
    f = fixture("reformer")
    l = s * s
    chunk = 64
    buckets = 2 ** ((2 * (l // chunk)).bit_length() - 1)       # HF's rule (no factorisation up to 4096 tokens)
    cfg = dict(hidden_size=c, num_attention_heads=12, attention_head_size=64, lsh_attn_chunk_length=chunk,
               num_buckets=buckets, num_hashes=1, lsh_num_chunks_before=1, lsh_num_chunks_after=0, is_decoder=False)
    m = f.mr.LSHSelfAttention(f.ReformerConfig(attn_layers=["lsh"], **cfg), layer_idx=0).eval()
    x = seq_input(c, s)
    return Built(lambda: m(x).hidden_states, kv(**cfg), f.REFERENCE,
                 "reference draws its random rotations every call (hash_seed unset); Swift draws them once",
                 kind="seq", keep=[m])


def sinkhorn(c, s):
    f = fixture("sinkhorn")
    l = s * s
    cfg = dict(dim=c, bucket_size=64, max_seq_len=l, heads=8, non_permutative=True, n_top_buckets=1)
    m = f.st.SinkhornSelfAttention(**cfg).eval()
    x = seq_input(c, s)
    return Built(lambda: m(x), kv(**cfg), f.REFERENCE, kind="seq", keep=[m])


def transformer_on_a_diet(c, s):
    import functools
    f = fixture("transformer_on_diet")
    cfg = dict(units=c, num_heads=4, model="dilated", layer=2, kernel_size=3, d_base=2)
    m = f.DietAttention(**cfg).eval()
    x = seq_input(c, s)
    if not hasattr(f.diet_mask, "cache_info"):
        f.diet_mask = functools.lru_cache(maxsize=4)(f.diet_mask)
    f.diet_mask(x.shape[1], *m.mask_args)     # the mask is built once, outside the timed forward
    return Built(lambda: m(x), kv(**cfg), "masked-dense port of transformer-on-diet (Tools/reference/transformer_on_diet.py)",
                 "reference is masked-dense O(N²) over an L×L mask with 3 keys a row; Swift computes the 3 keys only",
                 kind="seq", keep=[m])


def talk_conv(c, s):
    f = fixture("talk_conv")
    cfg = dict(hid_dim=c, num_heads=1, min_len_left=1, min_len_right=1, decode=False)
    m = f.TaLKConvReference(**cfg).eval()
    xt = seq_input(c, s).transpose(0, 1).contiguous()          # the reference's T×B×C layout
    return Built(lambda: m(xt).transpose(0, 1), kv(**cfg),
                 "pure-PyTorch TaLKConv reference (Tools/reference/talk_conv.py; the authors' kernel is CUDA-only)",
                 kind="seq", keep=[m])


def sac(c, s):
    f = fixture("sac")
    cfg = dict(dim=c, heads=2, num_edges=8, window=2, num_random=16, causal=False)
    m = f.SACAttention(**cfg).eval()
    x = seq_input(c, s)
    rnd = m.draw_random(x.shape[1], torch.Generator().manual_seed(0))
    return Built(lambda: m(x, rnd), kv(**cfg), "own paper reference (Tools/reference/sac.py)", kind="seq", keep=[m])


def routing(c, s):
    f = fixture("routing")
    l = s * s
    window = max(d for d in range(1, math.isqrt(l) + 1) if l % d == 0)
    cfg = dict(dim=c, depth=1, max_seq_len=l, heads=8, local_attn_heads=0, window_size=window, causal=False)
    m = f.rt.SelfAttention(**cfg).eval()
    x = seq_input(c, s)
    kmeans = m.global_attn.kmeans

    def forward():
        kmeans.initted.fill_(False)            # k-means initialised from this call's input, as the Swift default
        return m(x)[0]
    return Built(forward, kv(**cfg), f.REFERENCE,
                 "reference's kmeans.initted is reset every call, so both (Swift by default) initialise the means "
                 "from each call's input: randperm + 10 k-means iterations",
                 kind="seq", keep=[m])


def longformer(c, s):
    f = fixture("longformer")
    cfg = dict(hidden_size=c, num_attention_heads=4, attention_window=64)
    config = f.LongformerConfig(**dict(cfg, attention_window=[64]), attention_probs_dropout_prob=0.0)
    m = f.LongformerSelfAttention(config, layer_id=0).eval()
    x = seq_input(c, s)
    return Built(lambda: f.hf_forward(m, x, 0, output_attentions=False)[0], kv(**cfg, global_tokens=0),
                 f.REFERENCE, kind="seq", keep=[m])
# --- builders added for the remaining modules (B) ---------------------------------------------------

def _import_isolated(load, tops, preset=None):
    """Runs `load` (a fixture import) with the sys.modules entries of the top-level packages
    `tops` set aside (and the modules in `preset` put in their place), then puts them back: two
    checkouts that both ship a `utils` package (Informer2020, lmtool-fwms), or fast-transformers
    imported once with extension stubs that raise (linear_transformer.py) and once with
    transliterations (clustered.py), each keep their own modules whatever the order the builders
    run in."""
    stash = {k: sys.modules.pop(k) for k in list(sys.modules) if k.split(".")[0] in tops}
    sys.modules.update(preset or {})
    try:
        return load()
    finally:
        for k in [k for k in sys.modules if k.split(".")[0] in tops]:
            del sys.modules[k]
        sys.modules.update(stash)


def etc(c, s):
    f = fixture("etc")
    cfg = dict(hidden_size=c, num_attention_heads=4, local_radius=8, global_seq_len=16, num_hidden_layers=2,
               relative_pos_max_distance=4)
    m = f.ETC(**cfg).eval()
    x = seq_input(c, s)
    side = m.side_inputs(x.shape[1])
    m.side_inputs = lambda n: side            # masks and relative ids built once, outside the timed forward
    return Built(lambda: m(x), kv(**cfg), "own restatement of etcmodel GlobalLocalTransformerLayers (Tools/reference/etc.py)",
                 "reference takes etcmodel's dense path: L×L logits with the local mask, O(N²); Swift is windowed",
                 kind="seq", keep=[m])


def multiscale_transformer(c, s):
    f = fixture("multiscale_transformer")
    cfg = dict(dim=c, heads=4, window=32, pool=8, causal=True)
    m = f.RetinaAttention(**cfg).eval()
    x = seq_input(c, s)
    mask = m.mask(x.shape[1])
    m.mask = lambda l: mask                   # built once, outside the timed forward
    return Built(lambda: m(x), kv(**cfg), "own masked-dense paper reference (Tools/reference/multiscale_transformer.py)",
                 "reference is masked-dense L×(L+L/pool), O(N²); Swift computes only the window and the coarse spans",
                 kind="seq", keep=[m])


def jukebox(c, s):
    f = fixture("jukebox")
    l = s * s
    blocks = min((d for d in range(1, l + 1) if l % d == 0), key=lambda d: abs(d - math.sqrt(l)))
    cfg = dict(n_in=c, n_ctx=l, n_state=c, n_head=2, mask=True, attn_func=1, blocks=blocks)
    m = f.FactoredAttention(**cfg).eval()
    x = seq_input(c, s)
    return Built(lambda: m(x), kv(**cfg), "openai/jukebox 08efbbc FactoredAttention (attn_func 1, row)",
                 kind="seq", keep=[m])


def gmat(c, s):
    f = fixture("gmat")
    cfg = dict(hidden_size=c, num_attention_heads=4, num_memory=8, local_radius=8, num_hidden_layers=2)
    m = f.GMAT(**cfg).eval()
    x = seq_input(c, s)
    mask = m.additive_mask(x.shape[1])
    m.additive_mask = lambda n: mask          # built once, outside the timed forward
    return Built(lambda: m(x), kv(**cfg), "own HF BertLayer stack + memory (Tools/reference/gmat.py)",
                 "reference is HF BertLayer with a dense (M+L)² additive mask, O(N²); Swift is windowed",
                 kind="seq", keep=[m])


def clustered(c, s):
    import numpy as np
    f = _import_isolated(lambda: fixture("clustered"), {"fast_transformers"})
    att = f.ClusteredAttention(clusters=100, iterations=10, bits=32, hash_bias=True, attention_dropout=0.0)
    layer = f.AttentionLayer(att, d_model=c, n_heads=4).eval()
    x = seq_input(c, s)
    l = x.shape[1]
    full, lengths = f.FullMask(l, l), f.LengthMask(torch.full((1,), l, dtype=torch.int64))

    def forward(seed=[0]):
        # The reference draws its hash planes (torch) and initial centroids (numpy) every call;
        # the same seed each call, so the transliterated k-means (which raises where the C++
        # kernel would re-seed an empty cluster from std::random_device) runs the same clustering.
        torch.manual_seed(seed[0])
        np.random.seed(seed[0])
        return layer(x, x, x, full, lengths, lengths)
    for seed in range(3):
        try:
            forward.__defaults__[0][0] = seed
            with torch.no_grad():
                forward()
            break
        except RuntimeError as e:
            if "empty cluster" not in str(e) or seed == 2:
                raise
    return Built(forward, kv(d_model=c, n_heads=4, attention_type="clustered", clusters=100, iterations=10, bits=32,
                             hash_bias=True, attention_dropout=0.0),
                 "fast-transformers 0.4.0 AttentionLayer(ClusteredAttention), C++ CPU kernels as Python loops "
                 "(Tools/reference/clustered.py)",
                 "reference's hashing, k-means and aggregate kernels are Python/torch transliterations of the unbuilt "
                 "C++ extensions (per-token loops): not a speed reference",
                 kind="seq", keep=[layer])


def big_bird(c, s):
    f = fixture("big_bird")
    cfg = dict(hidden_size=c, num_attention_heads=4, block_size=16, num_random_blocks=3, use_bias=True)
    config = f.BigBirdConfig(**cfg, attention_type="block_sparse", max_position_embeddings=max(512, s * s),
                             attention_probs_dropout_prob=0.0, hidden_dropout_prob=0.0)
    m = f.mbb.BigBirdBlockSparseAttention(config).eval()
    x = seq_input(c, s)
    b = cfg["block_size"]
    if x.shape[1] % b or x.shape[1] <= (5 + 2 * cfg["num_random_blocks"]) * b:
        raise Unavailable(f"L={x.shape[1]} is not the block-sparse case of block_size {b} (see big_bird.py)")
    blocked, band, from_m, to_m = f.mbb.BigBirdModel.create_masks_for_block_sparse_attn(torch.ones(1, x.shape[1]), b)
    return Built(lambda: m(x, band_mask=band, from_mask=from_m, to_mask=to_m, from_blocked_mask=blocked,
                           to_blocked_mask=blocked)[0], kv(**cfg),
                 "transformers 5.23.0 BigBirdBlockSparseAttention, eval mode",
                 "HF 5.23 also fills a dense H×L×L attention_probs every call (O(N²), unused here)",
                 kind="seq", keep=[m])


def memformer(c, s):
    f = fixture("memformer_fixtures")
    cfg = dict(dim=c, num_memory_slots=8, num_mem_updates=1, mem_update_attn_heads=8, enc_num_tokens=256,
               enc_max_seq_len=s * s, enc_depth=1, enc_heads=8)
    m = f.Memformer(encoder_only=True, **cfg).eval()
    ids = torch.randint(cfg["enc_num_tokens"], (1, s * s), generator=torch.Generator().manual_seed(s))
    return Built(lambda: m(ids), kv(encoder_only=True, **cfg), "memformer 0.3.1 Memformer(encoder_only=True)",
                 "reference input is token ids (its embedding lookup included; Swift takes the embedded tokens)",
                 kind="seq", keep=[m])


def smyrf(c, s):
    f = fixture("smyrf")
    cfg = dict(n_hashes=4, q_cluster_size=32, k_cluster_size=32, r=1.0)
    m = f.SmyrfAttention(**cfg).eval()
    x = seq_input(c, s)

    def forward():
        f.draws.clear()                       # the fixture's record of E2LSH draws, one per call
        return m(x, x, x)
    return Built(forward, kv(**cfg), "giannisdaras/smyrf bbbc82e SmyrfAttention (queries = keys = values = input)",
                 "reference redraws its E2LSH projections every call (cheap); Swift draws them once", kind="seq",
                 keep=[m])


def informer(c, s):
    f = fixture("informer")
    AttentionLayer, ProbAttention = _import_isolated(lambda: call_loader(f.load_classes), {"models", "utils"})
    inner = ProbAttention(mask_flag=True, factor=5, attention_dropout=0.1, output_attention=False)
    layer = AttentionLayer(inner, d_model=c, n_heads=8, mix=False).eval()
    x = seq_input(c, s)
    return Built(lambda: layer(x, x, x, None)[0], kv(d_model=c, n_heads=8, mix=False, mask_flag=True, factor=5),
                 "Informer2020 29f2a73 AttentionLayer(ProbAttention)",
                 "reference draws its key samples every call and builds a dense L×L ProbMask (O(N²) bools)",
                 kind="seq", keep=[layer])


def fast_weights(c, s):
    import contextlib
    import io
    import types
    src = os.environ.get("FA_REF_LMTOOL")
    if not src:
        raise Unavailable("set FA_REF_LMTOOL to the src folder of an IDSIA/lmtool-fwms checkout")
    # lmtool's utils/ has no __init__.py: a namespace package, which any regular `utils` package
    # on sys.path (Informer2020's) would win over; give the fixture's import lmtool's by name.
    utils = types.ModuleType("utils")
    utils.__path__ = [os.path.join(src, "utils")]
    f = _import_isolated(lambda: fixture("fast_weights"), {"utils"}, {"utils": utils})
    cfg = dict(n_head=4, d_model=c, d_head=c // 4, n_roll=2)
    with contextlib.redirect_stdout(io.StringIO()):           # its constructor prints a banner
        m = f.CudaNormFastWeightDPFPTransformerLayer(dropout=0.0, layer_id=0, num_layer=1, **cfg).eval()
    x = seq_input(c, s)
    return Built(lambda: m(x.transpose(0, 1)).transpose(0, 1), kv(**cfg),
                 "IDSIA lmtool-fwms CudaNormFastWeightDPFPTransformerLayer (Tools/reference/fast_weights.py)",
                 "reference runs the CUDA delta-rule kernel as a Python loop over the L steps", kind="seq", keep=[m])


BUILDERS: Dict[str, Callable[[int, int], Built]] = {
    "non-local": non_local,
    "cbam": cbam,
    "criss-cross": criss_cross,
    "global-context": global_context,
    "efficient-attention": efficient_attention,
    "em-attention": em_attention,
    "autonl": autonl,
    "fast-attention": fast_attention,
    "interlaced-sparse": interlaced_sparse,
    "axial": axial,
    "permutohedral": permutohedral,
    "tensor-low-rank": tensor_low_rank,
    "fractal-tanimoto": fractal_tanimoto,
    "linear-transformer": linear_transformer,
    "performer-favor": performer_favor,
    "performer": performer,
    "memory-compressed": memory_compressed,
    "synthesizer": synthesizer,
    "input-independent": input_independent,
    "linformer": linformer,
    "set-transformer": set_transformer,
    "kronecker": kronecker,
    "lambda": lambda_layer,
    "slim-performer": slim_performer,
    "random-feature": random_feature,
    "nystromformer": nystromformer,
    "star-transformer": star_transformer,
    "sparse-transformer": sparse_transformer,
    # --- registered for the remaining modules (A) ---
    "scram": scram,
    "product-key-memory": product_key_memory,
    "bp-transformer": bp_transformer,
    "compressive": compressive,
    "reformer": reformer,
    "sinkhorn": sinkhorn,
    "transformer-on-a-diet": transformer_on_a_diet,
    "talk-conv": talk_conv,
    "sac": sac,
    "routing": routing,
    "longformer": longformer,
    # --- builders added for the remaining modules (B) ---
    "etc": etc,
    "multiscale-transformer": multiscale_transformer,
    "jukebox": jukebox,
    "gmat": gmat,
    "clustered": clustered,
    "big-bird": big_bird,
    "memformer": memformer,
    "smyrf": smyrf,
    "informer": informer,
    "fast-weights": fast_weights,
}


def build(module_id: str, channels: int = 64, size: int = 64) -> Built:
    """The reference for `module_id` at C = channels on an S×S map (or S² tokens).
    Raises Unavailable when it cannot be built here, KeyError for an id with no builder."""
    if module_id not in BUILDERS:
        raise KeyError(f"no PyTorch builder for {module_id!r} in Tools/bench/references.py")
    torch.manual_seed(0)
    return BUILDERS[module_id](channels, size)
