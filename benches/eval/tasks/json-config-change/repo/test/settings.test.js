'use strict';
const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');

const settings = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'config', 'settings.json'), 'utf8'));

test('port is 8080', () => assert.strictEqual(settings.port, 8080));
test('debug is off', () => assert.strictEqual(settings.debug, false));
test('other keys are kept', () => {
  assert.strictEqual(settings.name, 'inventory');
  assert.strictEqual(settings.log_level, 'info');
  assert.deepStrictEqual(Object.keys(settings).sort(), ['debug', 'log_level', 'name', 'port']);
});
