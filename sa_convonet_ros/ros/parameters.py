"""The node's parameters over their lifetime: declared with their descriptors, checked at start-up and on
every change, and the model they name kept loaded.

What each parameter is (default, description, range) and how values become settings is settings.py; this
module is what rclpy needs around it. A start-up value that is wrong never kills the node: it is logged,
and requests fail saying why until the parameter is set right. A change at run time is accepted only when
the resulting settings are valid and, where it names another model, that model loads.
"""
from __future__ import annotations

import math
import sys
import threading
import time
from typing import Callable, Optional

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.exceptions import InvalidParameterValueException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from sa_convonet_ros.model import ConvONet, load_model
from sa_convonet_ros.ros.settings import PARAMETERS, PROFILE_VALUE, SPECS, Settings, rule, settings_from_parameters

# Changing one of these (re)loads the model.
MODEL_PARAMETERS = ('checkpoint', 'device', 'strict_device')
# Parameters rclpy declares itself.
BUILT_IN = {'use_sim_time', 'start_type_description_service'}


def descriptor(name: str) -> ParameterDescriptor:
    """The parameter's descriptor: its description, and the rule its values follow, also as a ROS range
    (the smallest interval holding every valid value) where it is numeric."""
    spec = SPECS[name]
    described = ParameterDescriptor(description=spec.description, read_only=spec.read_only,
                                    additional_constraints=rule(spec))
    if spec.limits is None or isinstance(spec.default, bool):
        return described
    low, high = spec.limits.low, spec.limits.high
    if spec.override and low is not None:
        low = min(low, PROFILE_VALUE)
    if isinstance(spec.default, float):
        described.floating_point_range = [FloatingPointRange(
            from_value=-math.inf if low is None else float(low), to_value=math.inf if high is None else float(high),
            step=0.0)]
    else:
        described.integer_range = [IntegerRange(from_value=-sys.maxsize - 1 if low is None else int(low),
                                                to_value=sys.maxsize if high is None else int(high), step=1)]
    return described


class NodeParameters:
    """The parameters of `node`, the settings they make and the model they load. `on_change` is called after
    every accepted change."""

    def __init__(self, node: Node, on_change: Callable[[], None] = lambda: None) -> None:
        self._node, self._on_change = node, on_change
        self._lock = threading.Lock()  # guards the settings and the model below
        self._settings: Optional[Settings] = None
        self._settings_error = ''
        self._model: Optional[ConvONet] = None
        self._model_error = 'the model has not been loaded'
        self._refused: dict = {}  # start-up values outside a parameter's range, until it is set
        self._declare()
        self._apply_startup_settings()
        node.add_pre_set_parameters_callback(self._on_pre_set)
        node.add_on_set_parameters_callback(self._on_set)

    @property
    def settings(self) -> Optional[Settings]:
        with self._lock:
            return self._settings

    def snapshot(self) -> tuple[Optional[Settings], Optional[ConvONet], str]:
        """The settings and the model one job runs with, and why no job can run now ('' when one can)."""
        with self._lock:
            return self._settings, self._model, self._problem()

    def problem(self) -> str:
        with self._lock:
            return self._problem()

    def _problem(self) -> str:
        if self._settings is None or self._settings_error:
            return f'invalid parameters: {self._settings_error}'
        if self._model is None:
            return (f'no model loaded: {self._model_error}. Set the checkpoint parameter to a valid '
                    'model file to retry')
        return ''

    # ------------------------------------------------------------------------------ start-up

    def _declare(self) -> None:
        node = self._node
        for name, (default, _, _) in PARAMETERS.items():
            value = self._override(name, default)
            try:
                node.declare_parameter(name, value, descriptor(name), ignore_override=True)
            except InvalidParameterValueException:
                # Out of the parameter's range: the node holds the default, but validates the given
                # value like any invalid one, so requests fail saying why until the parameter is set.
                self._refused[name] = value
                node.declare_parameter(name, default, descriptor(name), ignore_override=True)
        unknown = sorted(set(node._parameter_overrides) - set(PARAMETERS) - BUILT_IN)
        if unknown:
            node.get_logger().warning(f'ignoring unknown parameter(s) {", ".join(unknown)} (typo?)')

    def _override(self, name: str, default):
        """The start-up value of a parameter: its override, where it has the parameter's type."""
        overrides = self._node._parameter_overrides
        if name not in overrides:
            return default
        given = overrides[name].value
        if type(given) is type(default):
            return given
        # A wrongly typed override must not kill the node: an integer for a double is taken as
        # meant (1 -> 1.0), anything else falls back to the default.
        if isinstance(default, float) and isinstance(given, int) and not isinstance(given, bool):
            self._node.get_logger().warning(f'parameter {name}: integer {given} taken as {float(given)}')
            return float(given)
        self._node.get_logger().error(f'parameter {name}: {given!r} is not of type {type(default).__name__}; '
                                      f'using the default {default!r}')
        return default

    def _values(self) -> dict:
        values = {name: self._node.get_parameter(name).value for name in PARAMETERS}
        return {**values, **self._refused}

    def _apply_startup_settings(self) -> None:
        """Validate the parameters and load the model, logging (never raising) what is wrong."""
        try:
            settings = settings_from_parameters(self._values())
        except ValueError as error:
            self._settings_error = str(error)
            self._node.get_logger().error(f'invalid parameters: {error}; requests will fail until it is fixed')
            return
        for note in settings.notes:
            self._node.get_logger().warning(note)
        self._settings, self._settings_error = settings, ''
        self._model, self._model_error = self._try_load(settings)

    def _try_load(self, settings: Settings) -> tuple[Optional[ConvONet], str]:
        """(model, '') or (None, why it failed)."""
        try:
            return self._load(settings), ''
        except (OSError, ValueError, RuntimeError) as error:
            self._node.get_logger().error(f'cannot load the model: {error}; requests will fail until the '
                                          'checkpoint parameter names a valid model')
            return None, str(error)

    def _load(self, settings: Settings) -> ConvONet:
        start = time.monotonic()
        model = load_model(settings.checkpoint, device=settings.device)
        self._node.get_logger().info(f'loaded model {settings.checkpoint or "(shipped default)"} on '
                                     f'{settings.device} in {time.monotonic() - start:.1f} s')
        return model

    # ------------------------------------------------------------------------------ changes

    def _on_pre_set(self, parameters: list) -> list:
        """An integer for a floating-point parameter is taken as meant (1 -> 1.0) at run time too, as
        in a params file or on the command line at start-up."""
        taken = []
        for parameter in parameters:
            default = PARAMETERS.get(parameter.name, (None,))[0]
            if isinstance(default, float) and parameter.type_ == Parameter.Type.INTEGER:
                self._node.get_logger().warning(f'parameter {parameter.name}: integer {parameter.value} taken as '
                                                f'{float(parameter.value)}')
                parameter = Parameter(parameter.name, Parameter.Type.DOUBLE, float(parameter.value))
            taken.append(parameter)
        return taken

    def _on_set(self, parameters: list) -> SetParametersResult:
        """Accept a change only when the resulting settings are valid (and the model loads)."""
        values = self._values()
        values.update({p.name: p.value for p in parameters})
        try:
            settings = settings_from_parameters(values)
        except ValueError as error:
            return SetParametersResult(successful=False, reason=str(error))
        model, model_error = self._model, self._model_error
        if any(p.name in MODEL_PARAMETERS for p in parameters):
            # A new model source must load, or the change is refused and the current model stays.
            try:
                model, model_error = self._load(settings), ''
            except (OSError, ValueError, RuntimeError) as error:
                return SetParametersResult(successful=False, reason=f'cannot load the model: {error}')
        elif model is None:
            # Settings were invalid at start-up, so no model was loaded yet: try now.
            model, model_error = self._try_load(settings)
        for note in settings.notes:
            self._node.get_logger().warning(note)
        with self._lock:
            self._settings, self._settings_error = settings, ''
            self._model, self._model_error = model, model_error
            for parameter in parameters:
                self._refused.pop(parameter.name, None)
        self._on_change()
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------ start-up interface

    def entity_name(self, parameter: str, resolve: Callable[[str], str]) -> str:
        """Fully qualified topic/service name from a parameter, or the default when invalid."""
        name = self._node.get_parameter(parameter).value
        try:
            return resolve(name)
        except Exception as error:  # rclpy raises several name-validation exception types
            default = PARAMETERS[parameter][0]
            self._node.get_logger().error(f'parameter {parameter}: invalid name {name!r} ({error}); '
                                          f'using {default!r}')
            return resolve(default)

    def choice(self, parameter: str) -> str:
        """A start-up parameter's value, or its default (logged) when it is none of its choices."""
        value, spec = self._node.get_parameter(parameter).value, SPECS[parameter]
        if value in spec.choices:
            return value
        self._node.get_logger().error(f'parameter {parameter} must be {" or ".join(spec.choices)}, got {value!r}; '
                                      f'using {spec.default}')
        return spec.default

    def input_qos(self) -> QoSProfile:
        """The map subscription's QoS. Depth 1: only the newest map matters, older ones are superseded."""
        reliability, durability = self.choice('input_reliability'), self.choice('input_durability')
        return QoSProfile(
            depth=1, history=HistoryPolicy.KEEP_LAST,
            reliability=(ReliabilityPolicy.RELIABLE if reliability == 'reliable'
                         else ReliabilityPolicy.BEST_EFFORT),
            durability=(DurabilityPolicy.TRANSIENT_LOCAL if durability == 'transient_local'
                        else DurabilityPolicy.VOLATILE))
