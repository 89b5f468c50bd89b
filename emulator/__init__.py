"""The local AWS emulator: moto in server mode, IAM enforcement on.

`python -m emulator` runs it for `make run`; tests call
`start_emulator()` directly. Part of the AWS gateway area: it may import
boto3 and moto.
"""

from emulator.launcher import (
    EmulatorError,
    PortInUse,
    RunningEmulator,
    running_emulator_from_state,
    start_emulator,
)

__all__ = ["EmulatorError", "PortInUse", "RunningEmulator", "running_emulator_from_state", "start_emulator"]
