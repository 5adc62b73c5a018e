"""gRPC registration and the compile command, without a server: what is refused, and what protoc makes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("grpc")
pytest.importorskip("grpc_tools")

from cello import App, ConfigurationError
from cello.cli import main

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "grpc"


def test_only_a_generated_servicer_is_served() -> None:
    with pytest.raises(ConfigurationError, match="not a gRPC servicer"):
        App().grpc_service(object())


def test_grpc_compile_writes_the_modules_and_refuses_a_missing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["grpc-compile", str(EXAMPLE / "greeter.proto"), "--out", str(tmp_path)]) == 0
    assert {path.name for path in tmp_path.iterdir()} >= {"greeter_pb2.py", "greeter_pb2.pyi", "greeter_pb2_grpc.py"}
    sys.path.insert(0, str(tmp_path))
    try:
        import greeter_pb2_grpc

        class Greeter(greeter_pb2_grpc.GreeterServicer):
            pass

        app = App()
        assert app.grpc_service(Greeter()) is not None  # found add_GreeterServicer_to_server beside its base
    finally:
        sys.path.remove(str(tmp_path))
    with pytest.raises(SystemExit) as refused:
        main(["grpc-compile", str(tmp_path / "missing.proto")])
    assert refused.value.code == 2
    assert "no such .proto file" in capsys.readouterr().err
