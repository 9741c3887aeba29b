"""The Feast feature repo, for people who run the `feast` CLI in this folder (paths are relative to it, as
`feature_store.yaml` is). Every object is built by `kfloop.features.repo.build_repo`, the code
`kfloop features apply` registers; this folder is not a Python package of the project.
"""

from kfloop.features import names
from kfloop.features.repo import build_repo

# The embedded default for the `feast` CLI run in this folder (see feature_store.yaml).
_default = build_repo("../.kfloop/features/offline")
user = _default.user
item = _default.item
user_context = _default.views[names.USER_CONTEXT]
item_context = _default.views[names.ITEM_CONTEXT]
user_implicit = _default.views[names.USER_IMPLICIT]
user_item_implicit = _default.views[names.USER_ITEM_IMPLICIT]
user_explicit = _default.views[names.USER_EXPLICIT]
user_item_explicit = _default.views[names.USER_ITEM_EXPLICIT]
user_implicit_push = _default.push_sources[names.USER_IMPLICIT]
user_item_implicit_push = _default.push_sources[names.USER_ITEM_IMPLICIT]
user_explicit_push = _default.push_sources[names.USER_EXPLICIT]
user_item_explicit_push = _default.push_sources[names.USER_ITEM_EXPLICIT]
ranker_training = _default.services[names.TRAINING_SERVICE]
ranker_serving = _default.services[names.SERVING_SERVICE]
