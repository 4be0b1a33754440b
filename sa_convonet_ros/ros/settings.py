"""The node's settings: every parameter, declared once from the setting it sets, and their validation.

Every parameter is a setting declared once, as a dataclass field with its help and range: the
reconstruction's own settings (config.py: `device`, `checkpoint`, and numeric knobs where -1 keeps the
profile's value), the node's run-time options (`NodeOptions`) and its start-up interface
(`NodeInterface`, read-only: it shapes topics and services). `SPECS` holds what each parameter is
(default, description, range); the parameter descriptors (parameters.py), config/reconstruct.yaml and the
table of docs/ros.md are made from it (scripts/generate_parameter_docs.py). Validation is the dataclasses'
own: they check the values and the error is reworded to name the parameter. No ROS is needed here.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, fields
from typing import Any, NamedTuple, Optional

from sa_convonet_ros.colors import COLOR_MODES
from sa_convonet_ros.config import (
    PROFILE_HELP,
    PROFILE_NAMES,
    Range,
    ReconstructionConfig,
    check_settings,
    get_profile,
    setting,
    setting_field,
)
from sa_convonet_ros.devices import resolve_devices
from sa_convonet_ros.errors import SettingError

NODE_NAME = 'sa_convonet_reconstruction'
PROFILE_VALUE = -1  # the value of an override parameter that keeps the profile's setting
# What the node adds to the description of a setting it takes from the reconstruction's configuration.
NOTES = {'checkpoint': 'Setting it at run time (re)loads the model.'}
# Parameters that set the model and where it runs: settings of ReconstructionConfig.
MODEL_SOURCE = {'device': 'device', 'checkpoint': 'checkpoint'}
# Parameters that spread the windows over workers, threads on the CPU or Ray workers (ray_runner.py):
# settings of ReconstructionConfig.
DISTRIBUTED = {'cpu_workers': 'cpu_workers', 'ray_address': 'ray_address', 'ray_workers': 'ray_workers',
               'ray_threads': 'ray_threads'}
# Parameters that override a numeric setting of the profile, by its path in ReconstructionConfig.
OVERRIDES = {
    'iterations': 'optimization.iterations',
    'voxel_size': 'meshing.voxel_size',
    'window_size': 'windows.window_size',
    'margin': 'windows.margin',
    'window_scale': 'windows.window_scale',
    'trim_distance': 'meshing.trim_distance',
    'threshold': 'meshing.threshold',
    'window_batch': 'optimization.window_batch',
}


@dataclass(frozen=True)
class NodeOptions:
    """The node's own settings; they may change at run time."""

    profile: str = setting('auto', PROFILE_HELP, choices=PROFILE_NAMES)
    strict_device: bool = setting(False, 'fail (instead of warning and using the CPU) when the requested CUDA '
                                         'device is not available')
    max_points: int = setting(0, 'cap on the points handed to the reconstruction (0 = no cap, else at least '
                                 '1000); larger clouds are voxel-subsampled (logged). Memory grows with the points '
                                 '(docs/memory.md): lower it where a map would not fit', at_least=0,
                              at_most=1_000_000_000)
    frame_id: str = setting('', "frame of the published mesh; empty = the frame of the input cloud ('map' if that "
                                "is empty too)")
    max_iterations: int = setting(10_000, "the most optimisation steps per window a request (or the iterations "
                                          "parameter) may ask for; bound the time with max_seconds", at_least=0,
                                  at_most=1_000_000)
    max_seconds: float = setting(0.0, "time budget of a reconstruction, seconds from the request's arrival (0 = "
                                      "none): the answer is due then, with the mesh of the state the optimisation "
                                      "reached (it stops early enough for the stages after it; the snap is left "
                                      "out when late; the stats say what was cut); a request's max_seconds "
                                      "replaces it", at_least=0)
    color_mode: str = setting('rgb', 'marker colours: rgb (input colours when present, else height) | height | '
                                     'uniform | confidence (how close each vertex lies to an observed point)',
                              choices=COLOR_MODES)
    max_triangles_per_marker: int = setting(200_000, 'split the mesh into TRIANGLE_LIST markers of at most this '
                                                     'many triangles', at_least=1, at_most=10_000_000)
    max_message_faces: int = setting(1_000_000, 'faces at most in the published markers and the service\'s mesh: a '
                                                'larger mesh is simplified for them (vertex clustering) while the '
                                                'mesh file keeps every face (0 = no limit; messages cost about '
                                                '0.8 kB a face, and a building at a 1 cm grid makes tens of '
                                                'millions); stats.message_faces says how many were sent',
                                 at_least=0, at_most=100_000_000)
    progressive: bool = setting(False, 'while a job runs, the markers show a feed-forward mesh on a grid three '
                                       'times coarser within seconds, then the optimised mesh slab by slab as its '
                                       'windows finish (every few seconds), then the result; costs the preview\'s '
                                       'time, which counts against max_seconds (docs/ros.md)')
    window_cache_mb: int = setting(1024, "memory for what earlier runs computed per window (field blocks, and "
                                         "adapted states for warm starts), kept for every later request, action "
                                         "goal and automatic run: windows whose points did not change are not "
                                         "recomputed, and their markers not resent (0 = none: every run "
                                         "recomputes every window)", at_least=0, at_most=1_000_000)
    auto_reconstruct: bool = setting(False, 'reconstruct automatically whenever the map changed, reusing the '
                                            'windows whose points did not change')
    auto_min_period: float = setting(30.0, 'automatic mode: at least this many seconds between the starts of two '
                                           'reconstructions', at_least=0)
    output_dir: str = setting('', "folder of the requests' output files: a relative output_path is taken from it "
                                  "and no output may leave it ('..' and '~' are refused); empty = relative paths "
                                  "from the node's working directory, absolute ones anywhere")

    def __post_init__(self) -> None:
        check_settings(self)
        if self.max_points != 0 and self.max_points < 1000:
            raise SettingError('max_points', '0 (no cap) or >= 1000', self.max_points)


@dataclass(frozen=True)
class NodeInterface:
    """Start-up settings: the node's topics and services, created once (read-only parameters). An invalid
    one is logged and its default used."""

    input_topic: str = setting('map_cloud', "topic of the accumulated sensor_msgs/PointCloud2 map, any field "
                                            "layout (relative names follow the node's namespace; remappable)")
    input_reliability: str = setting('reliable', 'reliability QoS of the map subscription: reliable | best_effort '
                                                 '(a best-effort publisher needs best_effort)',
                                     choices=('reliable', 'best_effort'))
    input_durability: str = setting('transient_local', 'durability QoS of the map subscription: transient_local '
                                                       '(receives latched maps, as octomap_server and open3d_slam '
                                                       'publish them) | volatile (a volatile publisher needs it)',
                                    choices=('transient_local', 'volatile'))
    service_name: str = setting('/reconstruct_scene', 'name of the ReconstructScene service')
    marker_topic: str = setting('~/mesh_markers', 'topic of the visualization_msgs/MarkerArray mesh for RViz '
                                                  '(transient local: RViz gets it when it joins)')
    mesh_msgs: str = setting('auto', 'also publish the mesh as mesh_msgs, for rviz_mesh_tools_plugins: '
                                     'MeshGeometryStamped on ~/mesh and MeshVertexColorsStamped (same uuid) on '
                                     '~/mesh/vertex_colors, transient local: auto (when mesh_msgs is installed) | '
                                     'on | off', choices=('auto', 'on', 'off'))


class ParameterSpec(NamedTuple):
    default: Any
    description: str
    read_only: bool
    limits: Optional[Range]  # the range validation enforces
    choices: Optional[tuple]
    override: bool  # -1 keeps the profile's value


def _specs() -> dict[str, ParameterSpec]:
    specs = {}
    for name, path in {**MODEL_SOURCE, **DISTRIBUTED, **OVERRIDES}.items():
        item, _ = setting_field(path)
        override = name in OVERRIDES
        default = (type(item.default)(PROFILE_VALUE) if override
                   else '' if item.default is None else item.default)  # ROS has no None: empty
        specs[name] = _spec(item, default, read_only=False, override=override)
    for cls, read_only in ((NodeOptions, False), (NodeInterface, True)):
        for item in fields(cls):
            specs[item.name] = _spec(item, item.default, read_only, override=False)
    return specs


def _spec(item, default: Any, read_only: bool, override: bool) -> ParameterSpec:
    text = item.metadata['help']
    description = text[0].upper() + text[1:] + '.'
    if override:
        description += " -1 = the profile's value."
    if item.name in NOTES:
        description += ' ' + NOTES[item.name]
    return ParameterSpec(default, description, read_only, item.metadata['range'], item.metadata['choices'],
                         override)


SPECS = _specs()
# name -> (default, description, read_only) of every parameter the node declares.
PARAMETERS = {name: (spec.default, spec.description, spec.read_only) for name, spec in SPECS.items()}


def rule(spec: ParameterSpec) -> str:
    """The values a parameter takes, in words: 'one of rgb, height, ...', '>= 0', 'in (0, 1), or -1 ...'."""
    if spec.choices is not None:
        return 'one of ' + ', '.join(spec.choices)
    if spec.limits is None:
        return ''
    return str(spec.limits) + (", or -1 for the profile's value" if spec.override else '')


@dataclass(frozen=True)
class Settings:
    """The validated run-time settings, derived from the parameters."""

    config: ReconstructionConfig
    device: str  # resolved, e.g. 'cpu' or 'cuda:0'; the model is loaded there (config.device lists all)
    options: NodeOptions
    notes: tuple = ()  # warnings to log, e.g. a CUDA fallback

    @property
    def checkpoint(self) -> Optional[str]:
        return self.config.checkpoint


def settings_from_parameters(values: dict) -> Settings:
    """Validate parameter values; raises ValueError naming the parameter and the problem."""
    try:
        options = NodeOptions(**{item.name: values[item.name] for item in fields(NodeOptions)})
        config = get_profile(options.profile, device=values['device']).updated(**_overrides(values))
    except SettingError as error:
        raise ValueError(_parameter_error(error)) from None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        try:
            devices = resolve_devices(values['device'], strict=options.strict_device)
        except ValueError as error:
            raise ValueError(f'parameter device: {error}') from None
    try:
        config = config.updated(device=','.join(str(d) for d in devices), checkpoint=values['checkpoint'].strip(),
                                **{path: values[name] for name, path in DISTRIBUTED.items()})
    except SettingError as error:
        raise ValueError(_parameter_error(error)) from None
    if config.optimization.iterations > options.max_iterations:
        raise ValueError(f'parameter iterations must be at most max_iterations ({options.max_iterations}), got '
                         f'{config.optimization.iterations} (profile {options.profile}): raise max_iterations or '
                         'lower iterations')
    return Settings(config=config, device=str(devices[0]), options=options,
                    notes=tuple(str(w.message) for w in caught))


def _overrides(values: dict) -> dict[str, dict[str, Any]]:
    """The profile's settings the parameters replace, by section: {'meshing': {'voxel_size': 0.05}}."""
    sections: dict[str, dict[str, Any]] = {}
    for name, path in OVERRIDES.items():
        if values[name] != PROFILE_VALUE:
            section, key = path.split('.')
            sections.setdefault(section, {})[key] = values[name]
    return sections


def _parameter_error(error: SettingError) -> str:
    """The error in the parameters' words: 'parameter margin must be smaller than window_size ...'."""
    names = {path: name for name, path in {**MODEL_SOURCE, **DISTRIBUTED, **OVERRIDES}.items()}
    suffix = " (or -1 for the profile's value)" if error.setting in OVERRIDES.values() else ''
    return 'parameter ' + error.describe(lambda path: names.get(path, path), suffix)
