"""How images are prepared for a model: the evaluation preprocessing each weights layout was
published with, and vertebra's own.

Weights expect the preprocessing they were trained with: torchvision's ImageNet mean and std after
a resize to 232 or 256 and a central 224 crop, timm's Inception-v4 and Xception a mean and std of
0.5 at 299 with bicubic resizing, the Caffe BN-Inception BGR pixels in 0-255 less a mean.  A
``DataConfig`` holds all of it; ``data_config(name)`` gives the published one of a model's weights
layout (recorded from the libraries themselves in the parity fixtures, which a test compares with
this table), or vertebra's training preprocessing for the models without one.  Weights saved by
``vertebra train`` carry the configuration they were trained with.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
HALF = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # Inception/TF weights: pixels scaled to [-1, 1]
CAFFE = ((104.0, 117.0, 128.0), (1.0, 1.0, 1.0))  # BGR means of 0-255 pixels


@dataclass(frozen=True)
class DataConfig:
    input_size: int
    resize_size: int  # the short side is resized to this, then the central input_size square is taken
    mean: tuple[float, float, float] = IMAGENET[0]
    std: tuple[float, float, float] = IMAGENET[1]
    interpolation: str = "bilinear"  # or "bicubic"
    channel_order: str = "RGB"  # "BGR": Caffe's
    pixel_range: float = 1.0  # the largest pixel value the mean and std refer to (255: Caffe's 0-255)
    source: str = "vertebra"  # whose preprocessing: the published weights' name, or vertebra's

    def __post_init__(self):
        if self.interpolation not in ("bilinear", "bicubic"):
            raise ValueError(f"interpolation must be 'bilinear' or 'bicubic', got {self.interpolation!r}")
        if self.channel_order not in ("RGB", "BGR"):
            raise ValueError(f"channel_order must be 'RGB' or 'BGR', got {self.channel_order!r}")
        if self.resize_size < self.input_size:
            raise ValueError(f"resize_size {self.resize_size} is smaller than the {self.input_size} crop")

    @property
    def crop_fraction(self) -> float:
        return self.input_size / self.resize_size

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, saved: dict) -> "DataConfig":
        return cls(**{**saved, "mean": tuple(saved["mean"]), "std": tuple(saved["std"])})


def vertebra_config(input_size: int) -> DataConfig:
    """What ``vertebra train`` evaluates with: a resize to input_size / 0.875, the central crop,
    ImageNet's mean and std."""
    return DataConfig(input_size, round(input_size / 0.875))


# model -> (input size, resize size, interpolation, (mean, std), weights): the evaluation
# preprocessing of the default published weights of the model's reference layout
PUBLISHED = {
    "alexnet_tv": (224, 256, "bilinear", IMAGENET, "AlexNet_Weights.IMAGENET1K_V1"),
    "bn_inception_caffe": (224, 256, "bilinear", CAFFE, "bninception.imagenet"),
    "densenet121": (224, 256, "bilinear", IMAGENET, "DenseNet121_Weights.IMAGENET1K_V1"),
    "densenet161": (224, 256, "bilinear", IMAGENET, "DenseNet161_Weights.IMAGENET1K_V1"),
    "densenet169": (224, 256, "bilinear", IMAGENET, "DenseNet169_Weights.IMAGENET1K_V1"),
    "densenet201": (224, 256, "bilinear", IMAGENET, "DenseNet201_Weights.IMAGENET1K_V1"),
    "efficientnet_b0": (224, 256, "bicubic", IMAGENET, "EfficientNet_B0_Weights.IMAGENET1K_V1"),
    "efficientnet_b1": (240, 255, "bilinear", IMAGENET, "EfficientNet_B1_Weights.IMAGENET1K_V2"),
    "efficientnet_b2": (288, 288, "bicubic", IMAGENET, "EfficientNet_B2_Weights.IMAGENET1K_V1"),
    "efficientnet_b3": (300, 320, "bicubic", IMAGENET, "EfficientNet_B3_Weights.IMAGENET1K_V1"),
    "efficientnet_b4": (380, 384, "bicubic", IMAGENET, "EfficientNet_B4_Weights.IMAGENET1K_V1"),
    "efficientnet_b5": (456, 456, "bicubic", IMAGENET, "EfficientNet_B5_Weights.IMAGENET1K_V1"),
    "efficientnet_b6": (528, 528, "bicubic", IMAGENET, "EfficientNet_B6_Weights.IMAGENET1K_V1"),
    "efficientnet_b7": (600, 600, "bicubic", IMAGENET, "EfficientNet_B7_Weights.IMAGENET1K_V1"),
    "googlenet_tv": (224, 256, "bilinear", IMAGENET, "GoogLeNet_Weights.IMAGENET1K_V1"),
    "inception_resnet_v2": (299, 333, "bicubic", HALF, "inception_resnet_v2.tf_in1k"),
    "inception_v3": (299, 342, "bilinear", IMAGENET, "Inception_V3_Weights.IMAGENET1K_V1"),
    "inception_v4": (299, 341, "bicubic", HALF, "inception_v4.tf_in1k"),
    "mnasnet0_5": (224, 256, "bilinear", IMAGENET, "MNASNet0_5_Weights.IMAGENET1K_V1"),
    "mnasnet0_75": (224, 232, "bilinear", IMAGENET, "MNASNet0_75_Weights.IMAGENET1K_V1"),
    "mnasnet1_0": (224, 256, "bilinear", IMAGENET, "MNASNet1_0_Weights.IMAGENET1K_V1"),
    "mnasnet1_3": (224, 232, "bilinear", IMAGENET, "MNASNet1_3_Weights.IMAGENET1K_V1"),
    "mobilenet_v1_100": (224, 256, "bicubic", HALF, "mobilenetv1_100.ra4_e3600_r224_in1k"),
    "mobilenet_v2_035": (224, 232, "bilinear", IMAGENET, "MobileNet_V2_Weights.IMAGENET1K_V2"),
    "mobilenet_v2_050": (224, 232, "bilinear", IMAGENET, "MobileNet_V2_Weights.IMAGENET1K_V2"),
    "mobilenet_v2_075": (224, 232, "bilinear", IMAGENET, "MobileNet_V2_Weights.IMAGENET1K_V2"),
    "mobilenet_v2_100": (224, 232, "bilinear", IMAGENET, "MobileNet_V2_Weights.IMAGENET1K_V2"),
    "mobilenet_v2_130": (224, 232, "bilinear", IMAGENET, "MobileNet_V2_Weights.IMAGENET1K_V2"),
    "mobilenet_v2_140": (224, 232, "bilinear", IMAGENET, "MobileNet_V2_Weights.IMAGENET1K_V2"),
    "mobilenet_v3_large": (224, 232, "bilinear", IMAGENET, "MobileNet_V3_Large_Weights.IMAGENET1K_V2"),
    "mobilenet_v3_small": (224, 256, "bilinear", IMAGENET, "MobileNet_V3_Small_Weights.IMAGENET1K_V1"),
    "preact_resnet101": (224, 235, "bicubic", HALF, "resnetv2_101.a1h_in1k"),
    "preact_resnet152": (224, 256, "bicubic", HALF, "resnetv2_152.untrained"),
    "preact_resnet18": (224, 248, "bicubic", HALF, "resnetv2_18.ra4_e3600_r224_in1k"),
    "preact_resnet34": (224, 248, "bicubic", HALF, "resnetv2_34.ra4_e3600_r224_in1k"),
    "preact_resnet50": (224, 235, "bicubic", HALF, "resnetv2_50.a1h_in1k"),
    "resnet101": (224, 232, "bilinear", IMAGENET, "ResNet101_Weights.IMAGENET1K_V2"),
    "resnet152": (224, 232, "bilinear", IMAGENET, "ResNet152_Weights.IMAGENET1K_V2"),
    "resnet18": (224, 256, "bilinear", IMAGENET, "ResNet18_Weights.IMAGENET1K_V1"),
    "resnet34": (224, 256, "bilinear", IMAGENET, "ResNet34_Weights.IMAGENET1K_V1"),
    "resnet50": (224, 232, "bilinear", IMAGENET, "ResNet50_Weights.IMAGENET1K_V2"),
    "resnext101_32x4d": (224, 256, "bilinear", IMAGENET, "resnext101_32x4d.fb_ssl_yfcc100m_ft_in1k"),
    "resnext101_32x8d": (224, 232, "bilinear", IMAGENET, "ResNeXt101_32X8D_Weights.IMAGENET1K_V2"),
    "resnext101_64x4d": (224, 232, "bilinear", IMAGENET, "ResNeXt101_64X4D_Weights.IMAGENET1K_V1"),
    "resnext50_32x4d": (224, 232, "bilinear", IMAGENET, "ResNeXt50_32X4D_Weights.IMAGENET1K_V2"),
    "se_resnet101": (224, 256, "bilinear", IMAGENET, "legacy_seresnet101.in1k"),
    "se_resnet152": (224, 256, "bilinear", IMAGENET, "legacy_seresnet152.in1k"),
    "se_resnet50": (224, 256, "bilinear", IMAGENET, "legacy_seresnet50.in1k"),
    "se_resnext101_32x4d": (224, 256, "bilinear", IMAGENET, "legacy_seresnext101_32x4d.in1k"),
    "se_resnext50_32x4d": (224, 256, "bilinear", IMAGENET, "legacy_seresnext50_32x4d.in1k"),
    "senet154": (224, 256, "bilinear", IMAGENET, "legacy_senet154.in1k"),
    "shufflenet_v2_x0_5": (224, 256, "bilinear", IMAGENET, "ShuffleNet_V2_X0_5_Weights.IMAGENET1K_V1"),
    "shufflenet_v2_x1_0": (224, 256, "bilinear", IMAGENET, "ShuffleNet_V2_X1_0_Weights.IMAGENET1K_V1"),
    "shufflenet_v2_x1_5": (224, 232, "bilinear", IMAGENET, "ShuffleNet_V2_X1_5_Weights.IMAGENET1K_V1"),
    "shufflenet_v2_x2_0": (224, 232, "bilinear", IMAGENET, "ShuffleNet_V2_X2_0_Weights.IMAGENET1K_V1"),
    "vgg11": (224, 256, "bilinear", IMAGENET, "VGG11_Weights.IMAGENET1K_V1"),
    "vgg11_bn": (224, 256, "bilinear", IMAGENET, "VGG11_BN_Weights.IMAGENET1K_V1"),
    "vgg13": (224, 256, "bilinear", IMAGENET, "VGG13_Weights.IMAGENET1K_V1"),
    "vgg13_bn": (224, 256, "bilinear", IMAGENET, "VGG13_BN_Weights.IMAGENET1K_V1"),
    "vgg16": (224, 256, "bilinear", IMAGENET, "VGG16_Weights.IMAGENET1K_V1"),
    "vgg16_bn": (224, 256, "bilinear", IMAGENET, "VGG16_BN_Weights.IMAGENET1K_V1"),
    "vgg19": (224, 256, "bilinear", IMAGENET, "VGG19_Weights.IMAGENET1K_V1"),
    "vgg19_bn": (224, 256, "bilinear", IMAGENET, "VGG19_BN_Weights.IMAGENET1K_V1"),
    "xception": (299, 333, "bicubic", HALF, "legacy_xception.tf_in1k"),
}


def published(name: str) -> DataConfig | None:
    """The published preprocessing of the weights layout ``name`` loads, if it has one."""
    if name not in PUBLISHED:
        return None
    size, resize, interpolation, (mean, std), weights = PUBLISHED[name]
    caffe = (mean, std) == CAFFE
    return DataConfig(size, resize, mean, std, interpolation, "BGR" if caffe else "RGB", 255.0 if caffe else 1.0,
                      weights)


def data_config(model) -> DataConfig:
    """The preprocessing ``model`` (a registered name, or a built model) expects: what its weights
    were trained with where they say so (vertebra's weights files), else its layout's published
    preprocessing, else vertebra's at the card's input size."""
    from .registry import model_info

    recorded = getattr(model, "data_config", None)
    if isinstance(recorded, DataConfig):
        return recorded
    name = model if isinstance(model, str) else getattr(model, "model_name", None)
    if not isinstance(name, str):
        raise TypeError(f"expected a model name or a vertebra model, got {type(model).__name__}")
    card = model_info(name)
    return published(card.name) or vertebra_config(card.input_size)
