// build.mjs — bundles the web console for strata-router (run by CMake):
//   node build.mjs SRC_DIR OUT_DIR NODE_MODULES
// esbuild bundles src/main.ts (with uPlot and the CSS it imports) into
// app-[hash].js / app-[hash].css, minified; index.html is written from
// src/index.html with those names filled in. Everything goes to OUT_DIR,
// which strata-console-embed turns into C (router/console_embed.c).
import { createRequire } from 'node:module';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { basename, join } from 'node:path';

const [srcDir, outDir, nodeModules] = process.argv.slice(2);
if (!srcDir || !outDir || !nodeModules) {
  console.error('usage: node build.mjs SRC_DIR OUT_DIR NODE_MODULES');
  process.exit(2);
}
const require = createRequire(join(nodeModules, 'x.js'));
const esbuild = require('esbuild');
mkdirSync(outDir, { recursive: true });
const res = await esbuild.build({
  entryPoints: { app: join(srcDir, 'main.ts') },
  bundle: true,
  minify: true,
  format: 'iife',
  target: 'es2020',
  entryNames: '[name]-[hash]',
  outdir: outDir,
  nodePaths: [nodeModules],
  metafile: true,
  legalComments: 'none',
  logLevel: 'warning',
});
const outs = Object.keys(res.metafile.outputs).map((p) => basename(p));
const js = outs.find((f) => f.endsWith('.js'));
const css = outs.find((f) => f.endsWith('.css'));
if (!js || !css) {
  console.error('build.mjs: esbuild wrote no app js/css: ' + outs.join(' '));
  process.exit(1);
}
const html = readFileSync(join(srcDir, 'index.html'), 'utf8')
  .replaceAll('%APP_JS%', 'ui/' + js)
  .replaceAll('%APP_CSS%', 'ui/' + css);
writeFileSync(join(outDir, 'index.html'), html);
