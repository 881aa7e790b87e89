"""Will it fit: the arithmetic, checked by hand on the starter model."""
import pytest

from kit.errors import BadParameter, WontFit
from kit.fit import MB, OVERHEAD_FIXED, check, estimate, estimate_numbers, kv_cache_bytes
from kit.modelfile import read_facts


def test_kv_cache_formula_by_hand():
    # 2 (K and V) * 30 layers * 3 KV heads * 64 dims * 2048 positions * 2 bytes
    assert kv_cache_bytes(30, 3, 64, 2048) == 2 * 30 * 3 * 64 * 2048 * 2


def test_starter_estimate_uses_its_own_shape(starter_path):
    facts = read_facts(starter_path)
    est = estimate(facts, n_ctx=2048)
    head_dim = facts.embedding_length // facts.head_count
    assert est.weights == facts.file_size
    assert est.kv_cache == kv_cache_bytes(facts.block_count, facts.head_count_kv,
                                          head_dim, 2048)
    assert est.total == est.weights + est.kv_cache + est.overhead
    assert estimate(facts, n_ctx=4096).kv_cache == 2 * est.kv_cache


def test_too_big_is_refused_with_the_arithmetic(starter_path):
    facts = read_facts(starter_path)
    with pytest.raises(WontFit) as err:
        check(facts, n_ctx=2048, ram_available=100 * MB)
    msg = str(err.value)
    assert "weights 98 MB" in msg and "available 100 MB" in msg
    assert "check_fit=False" in msg and "--force" in msg


def test_fits_on_this_machine(starter_path):
    assert check(read_facts(starter_path), n_ctx=2048).fits


def test_gpu_offload_moves_weights_to_vram():
    est = estimate_numbers(8_000 * MB, 32, 8, 128, 4096, n_gpu_layers=-1,
                           ram_available=16_000 * MB, vram_available=4_000 * MB)
    assert est.ram_needed == est.overhead
    assert not est.fits and "on the GPU" in est.explain()
    half = estimate_numbers(8_000 * MB, 32, 8, 128, 4096, n_gpu_layers=16)
    assert half.vram_needed == (half.weights + half.kv_cache) // 2


def test_an_8b_model_on_an_8gb_laptop():
    # Llama-3.1-8B Q4_K_M: 4.9 GB, 32 layers, 8 KV heads of 128; 5 GB free
    est = estimate_numbers(4_920 * MB, 32, 8, 128, 8192, ram_available=5_000 * MB)
    assert est.kv_cache == 1_073_741_824 and not est.fits
    assert est.overhead == OVERHEAD_FIXED + 492 * MB


@pytest.mark.parametrize("kw", [{"n_ctx": 0}, {"n_ctx": -5}, {"n_gpu_layers": -2}])
def test_impossible_numbers(kw):
    args = dict(file_size=1, n_layers=1, n_kv_heads=1, head_dim=1, n_ctx=8)
    args.update(kw)
    with pytest.raises(BadParameter):
        estimate_numbers(**args)
