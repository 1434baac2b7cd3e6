#!/usr/bin/env node
// masks_backend.js with one defect: among equal scores the HIGHER flat index is kept.
//
//     python -m conformance run --backend-cmd "node tests/backends/node/ties_to_higher_index.js" --family masks
//
// Everything else is the correct backend. The suite must fail it, and name the checks that
// catch it: the golden keep_top_k cases whose ties straddle the threshold (flag "ties") and
// the property masks/keep-top-k-differential, among others.
"use strict";

const backend = require("./masks_backend.js");

backend.conventions.tieOrder = (i, j) => j - i;
backend.main("refprune masks in Node.js, ties to the higher index (a planted defect)");
