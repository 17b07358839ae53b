import { defineConfig } from "vite";
import { viteSingleFile } from "vite-plugin-singlefile";

// One self-contained HTML file (script and styles inlined), written where the Python package serves it.
export default defineConfig({
  plugins: [viteSingleFile()],
  build: {
    outDir: "../../piapi_mcp/ui",
    emptyOutDir: false,
    target: "es2020",
    minify: true,
    modulePreload: { polyfill: false },
    reportCompressedSize: false,
    rollupOptions: { input: "task.html" },
  },
});
