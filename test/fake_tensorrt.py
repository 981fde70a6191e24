"""A stand-in ``tensorrt`` module for CPU machines: the builder records its calls, and the runtime *executes* the
engine's ONNX graph with onnxruntime, reading inputs from and writing the output to the raw addresses the backend
binds (CPU tensors here, CUDA tensors on a robot).

Bound by name, with the dtypes the engine declares: a backend that binds by position, passes float32 to an fp16-IO
engine, frees an input before the call or reads the output in the wrong dtype gets wrong numbers, not a pass.
"""

from __future__ import annotations

import ctypes
import json
import types

import numpy as np


class FakeDtype:
    def __init__(self, name: str, numpy_dtype):
        self.name, self.numpy = name, np.dtype(numpy_dtype)

    def __repr__(self):
        return f"DataType.{self.name.upper()}"


def _array_at(address: int, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A writable numpy view of ``shape`` items of ``dtype`` at a raw address (the memory a TensorRT binding names)."""
    nbytes = int(np.prod(shape)) * dtype.itemsize
    return np.frombuffer((ctypes.c_char * nbytes).from_address(address), dtype).reshape(shape)


class FakeTensorRT(types.ModuleType):
    """``sys.modules["tensorrt"] = FakeTensorRT(...)``. ``io_dtype`` "float16" makes every engine take and give
    fp16 (as a strongly typed fp16 build would); ``fail`` names a call that reports failure."""

    def __init__(self, version: str = "10.9.0", with_fp16: bool = True, io_dtype: str = "float32",
                 fail: str = ""):
        super().__init__("tensorrt")
        self.__version__, self.calls, self.fail = version, [], fail
        self.float32, self.float16 = FakeDtype("float", np.float32), FakeDtype("half", np.float16)
        self.io_dtype = self.float16 if io_dtype == "float16" else self.float32
        self.BuilderFlag = types.SimpleNamespace(**({"FP16": "FP16"} if with_fp16 else {}))
        self.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
        self.NetworkDefinitionCreationFlag = types.SimpleNamespace(EXPLICIT_BATCH=0)
        self.TensorIOMode = types.SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")
        fake = self
        self.loggers = []

        class Logger:
            WARNING = 2

            def __init__(self, level):
                fake.loggers.append(self)

        class Cache:
            def __init__(self, data=b""):
                self.data = data

            def serialize(self):
                return b"timing-cache"

        class Config:
            def __init__(self):
                self.flags, self.profiles = [], []

            def set_memory_pool_limit(self, pool, size):
                fake.calls.append(("pool", pool, size))

            def set_flag(self, flag):
                self.flags.append(flag)
                fake.calls.append(("flag", flag))

            def add_optimization_profile(self, profile):
                fake.calls.append(("profile", dict(profile.shapes)))
                self.profiles.append(dict(profile.shapes))

            def create_timing_cache(self, data):
                fake.calls.append(("timing cache in", bytes(data)))
                return Cache(data)

            def set_timing_cache(self, cache, ignore_mismatch):
                fake.calls.append(("ignore_mismatch", ignore_mismatch))
                return True

            def get_timing_cache(self):
                return Cache()

        class Profile:
            def __init__(self):
                self.shapes = {}

            def set_shape(self, name, lo, opt, hi):
                self.shapes[name] = (lo, opt, hi)

        class Network:
            onnx_path = None

        class Builder:
            def __init__(self, logger):
                self.logger = logger

            def create_network(self, flags):
                fake.calls.append(("network flags", flags))
                return Network()

            def create_builder_config(self):
                return Config()

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, network, config):
                fake.calls.append(("build", network.onnx_path))
                plan = {"onnx": network.onnx_path, "io_dtype": fake.io_dtype.name, "flags": config.flags,
                        "profile": config.profiles[0]}
                return json.dumps(plan).encode()

        class OnnxParser:
            num_errors = 0

            def __init__(self, network, logger):
                self.network = network

            def parse_from_file(self, path):
                fake.calls.append(("parse", path))
                self.network.onnx_path = path
                return True

        class Runtime:
            def __init__(self, logger):
                self.logger = logger

            def deserialize_cuda_engine(self, plan):
                fake.calls.append(("deserialize", type(plan).__name__))
                return None if fake.fail == "deserialize" else Engine(json.loads(bytes(plan)))

        class Engine:
            def __init__(self, plan):
                import onnxruntime as ort

                self.session = ort.InferenceSession(plan["onnx"], providers=["CPUExecutionProvider"])
                self.dtype = fake.float16 if plan["io_dtype"] == "half" else fake.float32
                self.names = [i.name for i in self.session.get_inputs()] + [o.name for o in self.session.get_outputs()]
                self.num_inputs = len(self.session.get_inputs())
                self.num_io_tensors = len(self.names)
                self.profile = plan["profile"]

            def get_tensor_name(self, i):
                return self.names[i]

            def get_tensor_mode(self, name):
                return "INPUT" if self.names.index(name) < self.num_inputs else "OUTPUT"

            def get_tensor_dtype(self, name):
                return self.dtype

            def create_execution_context(self):
                return None if fake.fail == "context" else Context(self)

        class Context:
            def __init__(self, engine):
                self.engine, self.shapes, self.addresses, self.result = engine, {}, {}, None

            def set_input_shape(self, name, shape):
                fake.calls.append(("shape", name, tuple(shape)))
                lo, _, hi = self.engine.profile[name]  # TensorRT refuses shapes outside the profile
                if len(shape) != len(lo) or any(not a <= s <= b for a, s, b in zip(lo, shape, hi)):
                    return False
                self.shapes[name] = tuple(shape)
                return fake.fail != "shape"

            def set_tensor_address(self, name, address):
                self.addresses[name] = address
                return True

            def _inputs(self):
                names = self.engine.names[: self.engine.num_inputs]
                return {n: _array_at(self.addresses[n], self.shapes[n], self.engine.dtype.numpy).astype(np.float32)
                        for n in names}

            def get_tensor_shape(self, name):
                self.result = self.engine.session.run(None, self._inputs())[0]  # the output shape needs the run
                return self.result.shape

            def execute_async_v3(self, stream_handle):
                fake.calls.append(("execute", stream_handle))
                if fake.fail == "execute":
                    return False
                out_name = self.engine.names[-1]
                result = self.engine.session.run(None, self._inputs())[0]
                _array_at(self.addresses[out_name], result.shape, self.engine.dtype.numpy)[...] = result
                return True

        self.Logger, self.Builder, self.OnnxParser, self.Runtime = Logger, Builder, OnnxParser, Runtime
