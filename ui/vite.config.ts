/// <reference types="vitest/config" />
import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";
import { resolve } from "node:path";

// The build goes into the Python package (router/ui/), which the router serves at /ui. It is checked in and
// tests/test_ui_build.py rebuilds it into a temporary folder (KNFLOW_UI_OUT) and compares byte for byte: the
// output must depend on the source only (content-hashed names, no timestamps, no source maps).
export default defineConfig({
  base: "/ui/",
  plugins: [react()],
  build: {
    outDir: process.env.KNFLOW_UI_OUT ?? resolve(import.meta.dirname, "../router/ui"),
    emptyOutDir: true,
    sourcemap: false,
    chunkSizeWarningLimit: 2000, // elkjs is one large module, loaded on the first DAG only
    reportCompressedSize: false,
  },
  test: {
    include: ["test/**/*.test.ts"],
    environment: "node",
  },
});
