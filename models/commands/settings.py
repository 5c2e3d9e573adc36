"""The training settings a command line asks for: the recipe, then the ``--config`` file, then
the flags, then what ``--size`` and ``--backend`` imply."""
from __future__ import annotations

__all__ = ["OFF", "settings_from_args", "config_from_args", "explicit_settings", "apply_size"]


class _Off:
    """The value of an optional setting turned off on the command line ('none')."""

    def __repr__(self) -> str:
        return "none"


OFF = _Off()


def settings_from_args(args) -> tuple[dict, set]:
    """The training settings this command line asks for (the recipe, then the --config file,
    then the flags, then what --size and --backend imply), and the keys it sets itself."""
    from ..training.recipes import recipe_config
    from ..training.config import TrainConfig

    from_file = TrainConfig.read_file(args.config) if args.config else {}
    recipe = args.recipe or from_file.get("recipe", "paper")
    given = dict(from_file)
    for field in TrainConfig().to_dict():
        flag = getattr(args, field, None)
        if flag is not None and field != "model_kwargs":
            given[field] = None if flag is OFF else flag
    # as in Python, a clip length of one's own keeps the recipe's look-back share of the clip
    values = {**recipe_config(recipe, **given).to_dict(), "recipe": recipe}
    touched = set(given) | ({"recipe"} if args.recipe else set())
    if getattr(args, "size", None):
        before = dict(values)
        apply_size(values, args.size, given=set(touched))
        touched |= {"model_kwargs", "sample_rate", "clip_seconds"}
        touched |= {key for key in values if values[key] != before[key]}
        # 'size' is a record (the model_kwargs it implies are compared): an older run resumed
        # with the flag that started it is the same run
        touched.discard("size")
    if getattr(args, "backend", None):
        values["model_kwargs"] = {**values["model_kwargs"], "backend": args.backend}
        touched.add("model_kwargs")
    return values, touched


def config_from_args(args):
    """The training settings of a new run (:func:`settings_from_args`)."""
    from ..training.config import TrainConfig

    return TrainConfig.from_dict(settings_from_args(args)[0])


def explicit_settings(args) -> dict:
    """Only the settings the command line sets itself: what a resumed run compares with the
    settings saved in its checkpoint."""
    values, touched = settings_from_args(args)
    return {key: values[key] for key in touched}


def apply_size(values: dict, size: str, given: set) -> None:
    """The model of ``size`` and its clips, and the size's training settings
    (:data:`models.nets.catalog.SIZE_SETTINGS`). A setting the user ``given`` (a flag or the --config
    file) is kept: ``--size compact --clip-seconds 3`` trains on 3-s clips. The hop (unless given)
    becomes half a clip ('paper' keeps the recipe's), and a look-back (unless given) keeps its
    share of the clip."""
    from ..nets.catalog import SIZE_SETTINGS, size_config

    kwargs = size_config(values["model"], size)
    size_clip = kwargs.pop("clip_samples") / kwargs["sample_rate"]
    size_rate = kwargs.pop("sample_rate")
    values["size"] = size
    values.update({k: v for k, v in SIZE_SETTINGS[size].items() if k not in given})
    clip_seconds = values["clip_seconds"] if "clip_seconds" in given else size_clip
    if "sample_rate" not in given:
        values["sample_rate"] = size_rate
    if "hop_seconds" not in given and size != "paper":
        values["hop_seconds"] = clip_seconds / 2
    if values["frame_lookback_seconds"] is not None and "frame_lookback_seconds" not in given:
        values["frame_lookback_seconds"] *= clip_seconds / values["clip_seconds"]
    values["clip_seconds"] = clip_seconds
    values["model_kwargs"] = {**kwargs, **values["model_kwargs"]}
