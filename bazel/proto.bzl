"""cc_grpc_proto: .proto files -> a C++ messages (+ gRPC service) library.

Uses the system `protoc` and `grpc_cpp_plugin` (Debian's protobuf-compiler and
protobuf-compiler-grpc), which match the system libraries we link against, so
generated code and runtime can never disagree on version.

    cc_grpc_proto(
        name = "uploading_cc",
        srcs = ["metrika/offline_conversions/v1/uploading_service.proto"],
        deps = [":other_cc"],   # cc_grpc_proto targets this one imports
        grpc = True,            # also generate *.grpc.pb.{h,cc}
        mock = False,           # also generate *_mock.grpc.pb.h (gMock stubs)
    )

Import paths are relative to the package that calls the macro (the `proto_root`),
so `proto/metrika/x.proto` is imported as `metrika/x.proto`, exactly as users of
other languages run `protoc -I proto`.
"""

def _strip(path, suffix):
    return path[:-len(suffix)] if path.endswith(suffix) else path

def cc_grpc_proto(name, srcs, deps = [], grpc = False, mock = False, visibility = None, proto_deps = [], testonly = False):
    """Generates and compiles srcs; proto_deps are .proto files they import."""
    pkg = native.package_name()
    bases = [_strip(s, ".proto") for s in srcs]
    hdrs = [b + ".pb.h" for b in bases]
    cc_srcs = [b + ".pb.cc" for b in bases]
    if grpc:
        hdrs += [b + ".grpc.pb.h" for b in bases]
        cc_srcs += [b + ".grpc.pb.cc" for b in bases]
    if mock:
        hdrs += [b + "_mock.grpc.pb.h" for b in bases]

    out_dir = "$(GENDIR)" + ("/" + pkg if pkg else "")
    src_dir = pkg if pkg else "."
    plugin_flags = ""
    if grpc:
        plugin_flags = ("--plugin=protoc-gen-grpc=$$(command -v grpc_cpp_plugin) " +
                        "--grpc_out={mock}{out} ").format(
            mock = "generate_mock_code=true:" if mock else "",
            out = out_dir,
        )

    native.genrule(
        name = name + "_gen",
        srcs = srcs + proto_deps,
        outs = hdrs + cc_srcs,
        cmd = ("command -v protoc >/dev/null || " +
               "{{ echo 'protoc missing: apt-get install -y protobuf-compiler' >&2; exit 1; }}; " +
               "{grpc_check}" +
               "protoc -I{src_dir} -I/usr/include --cpp_out={out} {plugin} " +
               "{files}").format(
            files = " ".join(["$(location %s)" % s for s in srcs]),
            grpc_check = ("command -v grpc_cpp_plugin >/dev/null || " +
                          "{ echo 'grpc_cpp_plugin missing: apt-get install -y protobuf-compiler-grpc' >&2; exit 1; }; ") if grpc else "",
            src_dir = src_dir,
            out = out_dir,
            plugin = plugin_flags,
        ),
        message = "protoc " + " ".join(srcs),
        testonly = testonly,
    )

    native.cc_library(
        name = name,
        srcs = cc_srcs,
        hdrs = hdrs,
        includes = ["."],
        deps = deps + ["@grpc"],
        visibility = visibility,
        testonly = testonly,
    )
