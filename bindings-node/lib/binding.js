'use strict';
// The native addon, through the loader napi-rs generated (../native.js).
module.exports = require('../native.js');
