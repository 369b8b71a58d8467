import torch
from transformers import AutoModel

from modalzoo.modeling_utils import ModalTokenizer, ModalTokenizerConfig
from modalzoo.quantizers import FiniteScalarQuantizer, ResidualVectorQuantizer, VectorQuantizer


def clustered(num_points=256, dim=8, centres=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    means = torch.randn(centres, dim, generator=generator) * 5
    labels = torch.randint(0, centres, (num_points,), generator=generator)
    return (means[labels] + 0.1 * torch.randn(num_points, dim, generator=generator)).view(2, -1, dim)


def test_vq_codes_are_nearest_neighbours_and_lookup_matches():
    vq = VectorQuantizer(dim=8, codebook_size=16).eval()
    x = torch.randn(2, 10, 8)
    out = vq(x)
    assert out.codes.shape == (2, 1, 10)
    distances = torch.cdist(x.reshape(-1, 8), vq.codebook)
    assert torch.equal(out.codes.flatten(), distances.argmin(-1))
    assert torch.allclose(vq.lookup(out.codes), out.quantized, atol=1e-6)


def test_cosine_vq_uses_unit_codes():
    vq = VectorQuantizer(dim=8, codebook_size=16, use_cosine_sim=True).eval()
    assert torch.allclose(vq.codebook.norm(dim=-1), torch.ones(16), atol=1e-5)
    out = vq(torch.randn(2, 5, 8))
    assert torch.allclose(out.quantized.norm(dim=-1), torch.ones(2, 5), atol=1e-5)


def test_kmeans_init_then_ema_updates_move_the_codebook():
    vq = VectorQuantizer(dim=8, codebook_size=4, kmeans_init=True, kmeans_iters=10, ema_decay=0.5).train()
    data = clustered()
    vq(data)
    # k-means found the four clusters: every point is close to its code
    out = vq(data)
    assert (out.quantized - data).norm(dim=-1).max() < 1.0
    before = vq.codebook.clone()
    vq(data + 1.0)
    assert not torch.equal(before, vq.codebook)


def test_dead_codes_are_expired_and_replaced():
    vq = VectorQuantizer(dim=8, codebook_size=32, threshold_ema_dead_code=2, ema_decay=0.5).train()
    data = clustered()
    with torch.no_grad():  # half the codes start far from any data point: they are never chosen
        vq.vq._codebook.embed[:, 16:] += 1000
        vq.vq._codebook.embed_avg[:, 16:] += 1000
    for _ in range(3):
        vq(data)
    # dead codes were re-sampled from the data
    nearest = torch.cdist(vq.codebook, data.reshape(-1, 8)).min(dim=-1).values
    assert nearest[16:].max() < 20


def test_residual_vq_truncates_depth_and_sums_layers():
    rvq = ResidualVectorQuantizer(dim=8, num_quantizers=3, codebook_size=16).eval()
    x = torch.randn(2, 7, 8)
    full = rvq(x)
    assert full.codes.shape == (2, 3, 7)
    assert torch.allclose(rvq.lookup(full.codes), full.quantized, atol=1e-5)
    two = rvq(x, num_quantizers=2)
    assert torch.equal(two.codes, full.codes[:, :2])
    # every added layer reduces the reconstruction error
    errors = [(rvq(x, num_quantizers=n).quantized - x).pow(2).mean() for n in (1, 2, 3)]
    assert errors[0] > errors[1] > errors[2]


def test_fsq_codes_cover_the_implicit_codebook():
    fsq = FiniteScalarQuantizer(levels=[8, 5, 5, 5])
    assert fsq.codebook_size == 1000
    out = fsq(torch.randn(4, 500, 4) * 3)
    assert out.codes.min() >= 0 and out.codes.max() < 1000
    assert out.codes.unique().numel() > 200
    assert torch.allclose(fsq.lookup(out.codes), out.quantized)


class FSQConfig(ModalTokenizerConfig):
    model_type = "fsq_probe"


class FSQProbe(ModalTokenizer):
    config_class = FSQConfig

    def __init__(self, config):
        super().__init__(config)
        self.quantizer = FiniteScalarQuantizer(levels=[8, 5, 5, 5], dim=6)
        self.post_init()


def test_fsq_non_persistent_buffers_survive_from_pretrained(tmp_path):
    # transformers 5 leaves non-persistent buffers as uninitialised memory on load; the base
    # class rebuilds them from ComputedBuffers.
    FSQProbe(FSQConfig()).save_pretrained(tmp_path)
    loaded = FSQProbe.from_pretrained(tmp_path)
    reference = FiniteScalarQuantizer(levels=[8, 5, 5, 5])
    for name in ("_levels", "_basis", "implicit_codebook"):
        assert torch.equal(getattr(loaded.quantizer.fsq, name), getattr(reference.fsq, name)), name
