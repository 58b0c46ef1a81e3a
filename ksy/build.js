#!/usr/bin/env node
// Compile ksy/qcow2.ksy (and the files it imports) with the npm
// kaitai-struct-compiler, which has no CLI of its own.
//
//   node ksy/build.js            write the generated parsers
//   node ksy/build.js --check    fail (exit 1) if the committed output drifted
//
// Targets: Python, into the package (qcow2harness/parser/), and JavaScript
// (ksy/generated/javascript/), which proves the description is portable and is
// what the Kaitai Web IDE runs.
'use strict';

const fs = require('fs');
const path = require('path');
const yaml = require('js-yaml');
const compiler = require('kaitai-struct-compiler');

const KSY_DIR = __dirname;
const REPO = path.dirname(KSY_DIR);
const MAIN_KSY = 'qcow2';
const TARGETS = {
  python: path.join(REPO, 'qcow2harness', 'parser'),
  javascript: path.join(KSY_DIR, 'generated', 'javascript'),
};
// Keys the Web IDE and every compiler target understand; anything else that
// starts with '-' would be a tool-specific trick.
const ALLOWED_DASH_KEYS = new Set(['-orig-id', '-webide-representation', '-default']);

function loadKsy(name) {
  const file = path.join(KSY_DIR, name + '.ksy');
  const text = fs.readFileSync(file, 'utf8');
  const spec = yaml.load(text, { schema: yaml.CORE_SCHEMA, filename: file });
  checkPortable(spec, name);
  return spec;
}

// Plain .ksy only: the same file must load in the Kaitai Web IDE.
function checkPortable(node, where) {
  if (Array.isArray(node)) {
    node.forEach((item, i) => checkPortable(item, `${where}[${i}]`));
  } else if (node !== null && typeof node === 'object') {
    for (const [key, value] of Object.entries(node)) {
      if (key.startsWith('-') && !ALLOWED_DASH_KEYS.has(key)) {
        throw new Error(`${where}.${key}: tool-specific key; keep the .ksy plain`);
      }
      checkPortable(value, `${where}.${key}`);
    }
  }
}

const importer = {
  importYaml: (name) => Promise.resolve(loadKsy(name.replace(/\.ksy$/, ''))),
};

// The Python target emits `import qcow2_zoned` for imported specs. The JVM
// compiler's --python-package option makes that a package-relative import;
// the JS API has no such option, so do the same rewrite here.
function pythonPackageRelative(files) {
  const modules = Object.keys(files).map((f) => f.replace(/\.py$/, ''));
  const out = {};
  for (const [file, source] of Object.entries(files)) {
    let text = source;
    for (const mod of modules) {
      text = text.replace(new RegExp(`^import ${mod}$`, 'm'), `from . import ${mod}`);
    }
    out[file] = text;
  }
  return out;
}

async function compileAll() {
  const mainSpec = loadKsy(MAIN_KSY);
  const result = {};
  for (const [lang, dir] of Object.entries(TARGETS)) {
    let files = await compiler.compile(lang, mainSpec, importer, false);
    if (lang === 'python') files = pythonPackageRelative(files);
    result[lang] = { dir, files };
  }
  return result;
}

function listGenerated(dir, lang) {
  if (!fs.existsSync(dir)) return [];
  const ext = lang === 'python' ? '.py' : '.js';
  return fs.readdirSync(dir).filter((f) => f.endsWith(ext) && f !== '__init__.py');
}

async function main() {
  const check = process.argv.includes('--check');
  let compiled;
  try {
    compiled = await compileAll();
  } catch (err) {
    const detail = err && err.toString ? err.toString() : JSON.stringify(err);
    console.error(`ksy: compilation failed: ${detail}`);
    process.exit(2);
  }
  let drift = 0;
  for (const [lang, { dir, files }] of Object.entries(compiled)) {
    const stale = listGenerated(dir, lang).filter((f) => !(f in files));
    if (check) {
      for (const [file, text] of Object.entries(files)) {
        const target = path.join(dir, file);
        const old = fs.existsSync(target) ? fs.readFileSync(target, 'utf8') : null;
        if (old !== text) {
          console.error(`ksy: drift: ${path.relative(REPO, target)} differs from the .ksy`);
          drift += 1;
        }
      }
      for (const file of stale) {
        console.error(`ksy: drift: ${path.relative(REPO, path.join(dir, file))} has no .ksy`);
        drift += 1;
      }
    } else {
      fs.mkdirSync(dir, { recursive: true });
      for (const file of stale) fs.unlinkSync(path.join(dir, file));
      for (const [file, text] of Object.entries(files)) {
        fs.writeFileSync(path.join(dir, file), text);
      }
      console.log(`ksy: ${lang}: wrote ${Object.keys(files).sort().join(', ')} to ${path.relative(REPO, dir)}`);
    }
  }
  if (check) {
    if (drift) {
      console.error(`ksy: ${drift} generated file(s) drifted; run 'make ksy' and commit`);
      process.exit(1);
    }
    console.log(`ksy: generated parsers match ksy/ (compiler ${compiler.version})`);
  }
}

main();
