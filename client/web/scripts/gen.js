// Generates the protobuf-es code for the uploadwatch API into gen/ with the
// system protoc and protoc-gen-es from node_modules (nothing generated is
// committed). Run by `npm run gen` / `npm run build`.
import { execFileSync } from "node:child_process";
import { mkdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(dirname(fileURLToPath(import.meta.url)));
const protoRoot = join(here, "..", "..", "proto");
const out = join(here, "gen");
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
execFileSync(
  "protoc",
  [
    `-I${protoRoot}`,
    "-I/usr/include", // google/protobuf/timestamp.proto (libprotobuf-dev)
    `--plugin=protoc-gen-es=${join(here, "node_modules", ".bin", "protoc-gen-es")}`,
    `--es_out=${out}`,
    "--es_opt=target=js+dts,import_extension=js",
    "metrika/offline_conversions/v1/uploading_service.proto",
    "google/rpc/status.proto",
    "google/rpc/error_details.proto",
  ],
  { stdio: "inherit" },
);
