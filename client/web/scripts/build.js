// Bundles the dashboard (src/) with esbuild into dist/: index.html and one
// JavaScript bundle. Run after gen.js (`npm run build`). Nothing in dist/ is
// committed; the server serves it with --web_static_dir=client/web/dist.
import { build } from "esbuild";
import { copyFileSync, existsSync, mkdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(dirname(fileURLToPath(import.meta.url)));
const src = join(here, "src");
const out = join(here, "dist");
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
if (existsSync(join(src, "main.js"))) {
  await build({
    entryPoints: [join(src, "main.js")],
    bundle: true,
    format: "esm",
    target: "es2020",
    minify: true,
    sourcemap: true,
    outfile: join(out, "app.js"),
    logLevel: "warning",
  });
  for (const f of ["index.html", "style.css"]) {
    if (existsSync(join(src, f))) copyFileSync(join(src, f), join(out, f));
  }
}
