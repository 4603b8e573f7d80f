import pytest

from webcnn.browser import Browser


def export_quietly(module, shape, path, *opset):
    """torch.onnx export of module.eval() with the exporter's warnings silenced; returns the path."""
    import warnings

    from webcnn import zoo

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return zoo.export(module.eval(), shape, str(path), *opset)


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium per test process. If it cannot start, the browser tests fail (never skip)."""
    with Browser() as br:
        yield br


def assert_close(name, got, ref, tol=1e-3):
    """webcnn's acceptance criterion: max abs error <= tol * max(1, max |reference|)."""
    import numpy as np

    ref = np.asarray(ref, np.float32)
    got = np.asarray(got, np.float32).reshape(ref.shape)
    assert np.isfinite(got[np.isfinite(ref)]).all(), f"{name}: non-finite values where the reference is finite"
    err = float(np.abs(got - ref)[np.isfinite(ref)].max(initial=0.0))
    bound = tol * max(1.0, float(np.abs(ref[np.isfinite(ref)]).max(initial=0.0)))
    assert err <= bound, f"{name}: max abs error {err:.3e} exceeds {bound:.3e}"
    return err
