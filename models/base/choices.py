"""The choices and bounds of every setting, in one module that imports nothing: the command line
offers them (``--help`` loads no numpy or torch), and every floor checks settings against them."""

__all__ = ["TIE_BREAKS", "NOISES", "VOTES", "CUTOFFS", "SIZES", "SAMPLE_RATES", "MAX_CLIP_SAMPLES",
           "MAX_FIXED_SAMPLES", "PROTOCOLS", "PREDICT_FORMATS", "EXPORT_FORMATS", "DEFAULT_OPSET"]

TIE_BREAKS = ("probability", "lowest")   # majority-vote ties: higher mean probability, lowest index
NOISES = ("gaussian", "uniform", "none")
VOTES = ("majority", "mean")
CUTOFFS = ("decay", "learn", "freeze")   # see models.training.cutoffs
SIZES = ("compact", "laptop", "paper")   # --size; see models.nets.catalog
#: The sample rates, in Hz, of audio files and models: below, upsampling to a model's rate would
#: multiply a track's size by a number read from a file; above, no recording format goes
#: (768 kHz is the highest rate converters offer).
SAMPLE_RATES = (1000, 768000)
#: The longest clip (2^22 samples, 4.4 min at 16 kHz) and fixed decoding length (2^26 samples,
#: 70 min at 16 kHz) a setting may ask for: settings come from files (checkpoints, exported
#: models), and these lengths size allocations before any audio is read.
MAX_CLIP_SAMPLES = 1 << 22
MAX_FIXED_SAMPLES = 1 << 26
#: How a run splits its songs (models.data.splits).
PROTOCOLS = ("auto", "cv", "filtered", "predefined")
PREDICT_FORMATS = ("table", "json", "csv")
EXPORT_FORMATS = ("onnx", "torch-export")
DEFAULT_OPSET = 18     # onnxscript's own opset (no conversion); onnxruntime >= 1.14 runs it
