'use strict';

/** 'hello world' -> 'Hello World'. */
function titleCase(text) {
  return text
    .split(/ +/)
    .filter((word) => word.length > 0)
    .map((word) => word[0].toUpperCase() + word.slice(1).toLowerCase())
    .join(' ');
}

module.exports = { titleCase };
