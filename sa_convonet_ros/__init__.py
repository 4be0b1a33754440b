"""sa_convonet_ros: surface meshes from point-cloud maps with SA-ConvONet."""

import os as _os
import pkgutil as _pkgutil

__version__ = "0.1.0"

# One import name lives in two folders: the Python sources (this repository, or its editable install)
# and the colcon install tree, which adds the generated interfaces `sa_convonet_ros.msg` and
# `sa_convonet_ros.srv` (and links to the same sources). Whichever of the two is found first, the
# package searches the other one too, so that the core modules and the interfaces import in one process.
__path__ = _pkgutil.extend_path(__path__, __name__)
# In the install tree (--symlink-install) this file is a link into the repository: search the
# repository's folder as well, so that modules added since the last build are found.
__path__.append(_os.path.dirname(_os.path.realpath(__file__)))


def _unique_dirs(paths):
    seen, out = set(), []
    for path in paths:
        key = _os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            out.append(path)
    return out


__path__ = _unique_dirs(__path__)
del _unique_dirs
