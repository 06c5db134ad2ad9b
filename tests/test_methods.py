"""Methods as the unit of extension: needs, shared baselines, targets with classes, aggregators,
attributions that save and load, and the exact answers of additive models."""

from importlib.metadata import EntryPoint

import numpy as np
import pytest

import onnxplain
from onnxplain import Attribution, Target, explain, explain_many
from onnxplain.attribution import Attribution as AttributionClass
from onnxplain.errors import OnnxplainError, PluginError
from onnxplain.method import Method, make_baseline
from onnxplain.model import OnnxModel
from onnxplain.perturbation.ablation import Ablation
from onnxplain.perturbation.aggregate import Aggregator, KeptMean, LinearSurrogate, OccludedMean, ShapleyEstimate
from onnxplain.perturbation.engine import PerturbationMethod
from onnxplain.perturbation.hdm import Hdm
from onnxplain.perturbation.kernel_shap import KernelShap
from onnxplain.perturbation.lime import Lime
from onnxplain.perturbation.masks import FeatureMasks, MaskBatch, MaskSource
from onnxplain.perturbation.occlusion import Occlusion
from onnxplain.perturbation.shapley import ShapleySampling
from onnxplain.registry import Registry


@pytest.fixture
def model(brightness):
    return OnnxModel(brightness(), device="cpu", batch_size=16)


@pytest.fixture
def gradient_image():
    """A 24x24 image whose brightness rises left to right, so every feature matters differently."""
    return np.tile(np.linspace(0.4, 1.0, 24, dtype=np.float32), (24, 1))[..., None]


class NeedsGradients(Method):
    name = "needs-gradients"
    needs = frozenset({"predictions", "gradients"})

    def _attribute(self, model, baseline, *, batch_size, progress):
        raise AssertionError("never reached: the model cannot serve gradients")


def test_a_method_whose_needs_the_model_cannot_serve_is_refused(model, bright_square):
    with pytest.raises(OnnxplainError, match="method 'needs-gradients' needs the model's gradients, which "
                                             "OnnxModel cannot give"):
        NeedsGradients().attribute(model, bright_square)


class CountingModel:
    """Wraps a model and counts unperturbed (batch of one) forward passes."""

    def __init__(self, model):
        self.model, self.single = model, 0
        self.serves, self.batch_size = model.serves, model.batch_size

    def __getattr__(self, name):
        return getattr(self.model, name)

    def predict(self, images, **options):
        self.single += len(images) == 1
        return self.model.predict(images, **options)


def test_several_methods_share_one_unperturbed_forward_pass(model, bright_square):
    counting = CountingModel(model)
    methods = [Occlusion(window=8, stride=8), Ablation(segments="grid", n_segments=4)]
    results = explain_many(counting, bright_square, methods=methods, batch_size=4)
    assert counting.single == 1
    assert [r.method for r in results] == ["occlusion", "ablation"]
    alone = Occlusion(window=8, stride=8).attribute(model, bright_square, batch_size=4)
    np.testing.assert_array_equal(results[0].map, alone.map)


def test_the_target_carries_the_class(brightness, bright_square):
    model = OnnxModel(brightness(head="two-class"), device="cpu")  # class 0: dark pixels, class 1: bright
    method = Occlusion(window=4, stride=4)
    bright = method.attribute(model, bright_square, Target.whole_class(1))
    dark = method.attribute(model, bright_square, Target.whole_class().of_class(0))
    assert bright.segment.sum() == 80 and dark.segment.sum() == 32 * 32 - 80
    assert bright.map[8:16, 10:20].mean() > 0 and bright.map[24:].max() == 0
    assert bright.record["target"]["class"] == 1 and dark.record["target"]["class"] == 0
    with pytest.raises(OnnxplainError, match="class 2 does not exist"):
        method.attribute(model, bright_square, Target.whole_class(2))


def test_the_target_carries_the_output(brightness, bright_square):
    model = OnnxModel(brightness(second_output=True), device="cpu")
    negated = make_baseline(model, np.zeros_like(bright_square), Target.whole_class().of_class(None, "negated"))
    assert negated.output.mask.all()  # -z is positive on the dark image


def test_attribution_saves_and_loads(model, bright_square, tmp_path):
    result = explain(model, bright_square, method="lime", n_samples=40, segments="grid", n_segments=9, seed=4,
                     target=Target.box(8, 8, 20, 16))
    result.save(tmp_path / "lime", extra={"image_file": "square.png"})
    loaded = Attribution.load(tmp_path / "lime")
    for name in ("map", "image", "segment", "region", "values"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(result, name))
    assert loaded.baseline_value == result.baseline_value and set(loaded.arrays) == {"features", "feature_weights"}
    assert loaded.record["method"] == result.record["method"] and loaded.record["image_file"] == "square.png"
    # Pictures come from the saved data alone: the reloaded attribution draws the same ones.
    loaded.save(tmp_path / "again")
    for picture in ("heatmap.png", "overlay.png", "isolines.png"):
        assert (tmp_path / "lime" / picture).read_bytes() == (tmp_path / "again" / picture).read_bytes()


def test_loading_a_folder_that_is_no_attribution(tmp_path):
    with pytest.raises(OnnxplainError, match="holds no explanation.json"):
        AttributionClass.load(tmp_path)


def test_hdm_circle_pictures_come_back_from_a_saved_attribution(model, bright_square, tmp_path):
    explain(model, bright_square, method="hdm", circle_size=5, offset=4).save(tmp_path / "hdm")
    loaded = Attribution.load(tmp_path / "hdm")
    loaded.save(tmp_path / "again")
    first, again = (tmp_path / folder / "circles_worse.png" for folder in ("hdm", "again"))
    assert first.read_bytes() == again.read_bytes()


# --- aggregators ------------------------------------------------------------------------------------


class Fixed(MaskSource):
    def __init__(self, masks):
        super().__init__(masks.shape[1:])
        self.masks = masks

    def __len__(self):
        return len(self.masks)

    def _masks(self, start, stop):
        return self.masks[start:stop]


def run(aggregator, source, values, baseline=0.0):
    aggregator.begin(source, baseline)
    aggregator.add(source.batch(0, len(source)), np.asarray(values, dtype=np.float64))
    return aggregator.finish()


def test_occluded_and_kept_means_by_hand():
    masks = np.array([[[0, 1]], [[1, 0]], [[0, 0]]], np.float32)  # 1x2 images
    values = [1.0, 2.0, 4.0]
    # Pixel 0 is hidden by masks 0 and 2: mean 2.5, minus the baseline 0.5. Pixel 1: masks 1 and 2.
    np.testing.assert_allclose(run(OccludedMean(), Fixed(masks), values, 0.5), [[2.0, 2.5]])
    # Kept: pixel 0 kept by mask 1 (2.0), pixel 1 by mask 0 (1.0); the overall mean is 7/3.
    np.testing.assert_allclose(run(KeptMean(), Fixed(masks), values), [[7 / 3 - 2.0, 7 / 3 - 1.0]], rtol=1e-6)


class AllCoalitions(FeatureMasks):
    def __len__(self):
        return 2**self.n_features

    def _coalitions(self, start, stop):
        bits = np.arange(start, stop)[:, None] >> np.arange(self.n_features) & 1
        return bits.astype(bool)


def test_the_linear_surrogate_recovers_a_linear_model_exactly():
    features = np.array([[0, 1, 2, 3]])
    source = AllCoalitions(features)
    coalitions = source.batch(0, len(source)).coalitions
    weights = np.array([0.5, -1.0, 2.0, 0.25])
    values = -(coalitions @ weights + 3.0)  # distances fall as the linear model rises
    for kernel in ("exponential", "shapley", "uniform"):
        surrogate = LinearSurrogate(kernel=kernel, ridge=0.0)
        np.testing.assert_allclose(run(surrogate, source, values)[0], weights, atol=1e-6)
        np.testing.assert_allclose(surrogate.arrays()["feature_weights"], weights, atol=1e-6)


def test_shapley_estimate_from_permutations_of_an_interaction():
    """f(S) = 1 if features 0 and 1 are both in S: each gets half the credit, feature 2 none."""
    source = ShapleySampling(n_permutations=40, segments="grid").mask_source(np.zeros((1, 3, 1), np.float32))
    coalitions = source.batch(0, len(source)).coalitions
    values = -(coalitions[:, 0] & coalitions[:, 1]).astype(float)
    np.testing.assert_allclose(run(ShapleyEstimate(), source, values)[0], [0.5, 0.5, 0.0], atol=0.15)


def test_feature_aggregators_refuse_pixel_masks(model, bright_square):
    with pytest.raises(OnnxplainError, match="aggregator 'linear-surrogate' fits one value per feature, but "
                                             "BoxMasks makes pixel masks"):
        Occlusion(window=8, stride=8, aggregator="linear-surrogate").attribute(model, bright_square)


class Median(Aggregator):
    """A third-party aggregator: the median value of the masks hiding each pixel."""

    name = "median"

    def _begin(self):
        self.seen = []

    def add(self, batch: MaskBatch, values):
        self.seen.extend(zip(batch.masks, values, strict=True))

    def finish(self):
        stacked = np.array([np.where(m < 1, v, np.nan) for m, v in self.seen])
        return np.nan_to_num(np.nanmedian(stacked, axis=0) - self.baseline_value).astype(np.float32)


def test_a_new_aggregator_is_a_plugin(model, bright_square, monkeypatch):
    installed = onnxplain.registry.plugins._entry_points
    extra = [EntryPoint("median", "test_methods:Median", "onnxplain.aggregators")]
    registry = Registry(lambda group: [e for e in extra if e.group == group] + list(installed(group=group)))
    monkeypatch.setattr("onnxplain.perturbation.engine.plugins", registry)
    result = Occlusion(window=8, stride=8, aggregator="median").attribute(model, bright_square)
    assert result.record["aggregator"]["name"] == "median" and result.map[8:16, 10:20].max() > 0


class NoMasks(PerturbationMethod):
    name = "no-masks"

    def mask_source(self, image):
        return Fixed(np.ones((0, *image.shape[:-1]), np.float32))


def test_a_method_with_nothing_to_perturb_says_so(model, bright_square):
    with pytest.raises(OnnxplainError, match="finds no features to perturb"):
        NoMasks().attribute(model, bright_square)


# --- additive models: Shapley values are known exactly ----------------------------------------------


def test_on_an_additive_model_every_superpixel_method_finds_the_exact_shapley_values(model, gradient_image):
    """The brightness model's class score is a mean of per-pixel terms, so it is additive over any
    features: each feature's Shapley value is its own effect, which ablation measures exactly."""
    options = {"segments": "grid", "n_segments": 6, "seed": 1}
    exact = Ablation(**options).attribute(model, gradient_image)
    kernel = KernelShap(n_samples=64, **options).attribute(model, gradient_image)
    shapley = ShapleySampling(n_permutations=3, **options).attribute(model, gradient_image)
    lime = Lime(n_samples=64, ridge=0.0, **options).attribute(model, gradient_image)
    scale = np.abs(exact.map).max()
    assert scale > 0
    for result in (kernel, shapley, lime):
        np.testing.assert_allclose(result.map, exact.map, atol=1e-5 * scale, err_msg=result.method)
    # Efficiency: the values add up to the score of the image minus that of the fully hidden one.
    phi = kernel.arrays["feature_weights"]
    ends = kernel.values[:2]  # distances of the fully hidden and the whole image
    assert phi.sum() == pytest.approx(ends[0] - ends[1], abs=1e-6)


def test_same_seed_same_map_for_every_random_method(model, gradient_image):
    for name, options in (("lime", {"n_samples": 30}), ("kernel-shap", {"n_samples": 30}),
                          ("shapley", {"n_permutations": 2}), ("rise", {"n_masks": 30})):
        first = explain(model, gradient_image, method=name, seed=5, **options)
        again = explain(model, gradient_image, method=name, seed=5, **options)
        other = explain(model, gradient_image, method=name, seed=6, **options)
        np.testing.assert_array_equal(first.values, again.values)
        assert not np.array_equal(first.values, other.values), name


def test_an_instance_keeps_its_own_settings(model, bright_square):
    with pytest.raises(OnnxplainError, match="give its seed, score and parameters to its constructor"):
        explain(model, bright_square, method=Occlusion(), seed=3)
    with pytest.raises(PluginError, match="a method must be a Method or the name of one"):
        explain(model, bright_square, method=42)


# --- found in review ---------------------------------------------------------------------------------


def test_lime_and_kernel_shap_keep_their_own_surrogate():
    for aggregator in (None, "linear-surrogate"):
        assert Lime(kernel_width=0.5, aggregator=aggregator).aggregator.kernel_width == 0.5
        assert KernelShap(aggregator=aggregator).aggregator.kernel == "shapley"
    assert Lime(aggregator="occluded-mean").aggregator.name == "occluded-mean"


def test_an_image_changed_in_place_gets_new_superpixels(model):
    image = np.zeros((24, 24, 1), np.float32)
    image[:, :12] = 1.0
    method = Ablation(segments="felzenszwalb", n_segments=4)
    before = method.attribute(model, image).arrays["features"].copy()
    image[:12] = 1.0 - image[:12]  # the same array, other pixels
    assert not np.array_equal(method.attribute(model, image).arrays["features"], before)


def test_the_shapley_aggregator_needs_permutation_masks(model, gradient_image):
    with pytest.raises(OnnxplainError, match="aggregator 'shapley' found no marginal contributions"):
        Ablation(segments="grid", n_segments=4, aggregator="shapley").attribute(model, gradient_image)


def test_occlusion_refuses_a_stride_beyond_its_window():
    with pytest.raises(OnnxplainError, match=r"stride \(9\) must not exceed window \(4\)"):
        Occlusion(window=4, stride=9)


def test_feature_labels_must_be_numbered_from_zero_without_gaps():
    with pytest.raises(PluginError, match="not 0 to 2 without gaps"):
        AllCoalitions(np.array([[-1, 0, 2]]))


def test_recorded_parameters_make_the_same_method_again(model, bright_square):
    hdm = Hdm(normalize=True, circle_size=5, offset=8)
    parameters = {k: v for k, v in hdm.parameters().items() if k not in ("score", "aggregator")}
    again = Hdm(**parameters)
    np.testing.assert_array_equal(again.attribute(model, bright_square).map, hdm.attribute(model, bright_square).map)


def test_a_record_that_cannot_be_written_leaves_no_file(model, bright_square, tmp_path):
    result = Occlusion(window=8, stride=8).attribute(model, bright_square)
    with pytest.raises(OnnxplainError, match="the record's 'note' cannot be written as JSON"):
        result.save(tmp_path / "out", extra={"note": object()})
    assert not (tmp_path / "out").exists()


def test_explain_many_takes_names_and_checks_every_method_first(model, bright_square, tmp_path):
    assert [r.method for r in explain_many(model, bright_square, methods=["occlusion", "hdm"])] == ["occlusion", "hdm"]
    with pytest.raises(OnnxplainError, match="fits one value per feature"):
        explain_many(model, bright_square, methods=[CountingOcclusion(), Occlusion(aggregator="shapley")])
    assert CountingOcclusion.runs == 0  # the bad second method stopped the run before the first one ran


class CountingOcclusion(Occlusion):
    runs = 0

    def _attribute(self, *args, **kwargs):
        CountingOcclusion.runs += 1
        return super()._attribute(*args, **kwargs)
