// Placeholder: the console's script replaces this file.
"use strict";
