'use strict';

/** Numbers from start up to (not including) end, by step. */
function range(start, end, step = 1) {
  if (step === 0) throw new RangeError('step must not be 0');
  const out = [];
  for (let n = start; step > 0 ? n < end : n > end; n += step) out.push(n);
  return out;
}

module.exports = { range };
