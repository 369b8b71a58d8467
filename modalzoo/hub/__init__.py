"""Hub publishing: model cards, one-commit pushes, remote-code export, readable Hub errors.

    from modalzoo.hub import push_model
    push_model(model, "me/titok-l32", metrics=evaluation)      # weights + processor + card
    push_model("converted/", "me/titok-l32", with_code=True)   # + code for trust_remote_code
"""

from .cards import model_facts, render_model_card
from .errors import HubError, describe_hub_error, hub_step
from .pull import from_pretrained
from .push import load_folder, push_model, push_processor, save_for_hub
from .remote_code import RemoteCodeError, export_remote_code

__all__ = [
    "HubError",
    "RemoteCodeError",
    "describe_hub_error",
    "export_remote_code",
    "from_pretrained",
    "hub_step",
    "load_folder",
    "model_facts",
    "push_model",
    "push_processor",
    "render_model_card",
    "save_for_hub",
]
