#!/usr/bin/env node
// Parse an image with the generated JavaScript parser and print what it found
// as JSON: the portability check for ksy/ (tests/test_ksy.py compares it with
// the Python parser). Usage: node ksy/dump_with_js.js IMAGE
'use strict';

const fs = require('fs');
const path = require('path');
const KaitaiStream = require('kaitai-struct/KaitaiStream');
const { Qcow2 } = require(path.join(__dirname, 'generated', 'javascript', 'Qcow2'));

const HEADER_FIELDS = [
  'version', 'clusterBits', 'virtualSize', 'numL1Entries', 'ofsL1Table',
  'ofsRefcountTable', 'numRefcountTableClusters', 'numSnapshots', 'ofsSnapshotTable',
  'refcountOrder', 'lenHeader',
];

const image = new Qcow2(new KaitaiStream(fs.readFileSync(process.argv[2])));
const header = {};
for (const field of HEADER_FIELDS) {
  // u8 fields arrive as JS numbers; every corpus value is below 2**53.
  header[field] = image.header[field] === undefined ? null : Number(image.header[field]);
}
const extensions = image.headerExtensions.entries
  .filter((ext) => ext.magic !== 0)
  .map((ext) => ({ magic: ext.magic >>> 0, length: ext.lenBody }));
const l1 = image.l1Table.entries.map((entry) => Number(entry.ofsL2Table));
console.log(JSON.stringify({ header, extensions, l1 }));
