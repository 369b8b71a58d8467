from ...processing_utils import ModalAudioFeatureExtractor, ModalImageProcessor


class ReferenceImageProcessor(ModalImageProcessor):
    """[0, 1] pixels, shorter side resized then centre-cropped to the model's image size."""


class ReferenceAudioFeatureExtractor(ModalAudioFeatureExtractor):
    """Mono audio at the model's rate, padded to a multiple of its hop."""
