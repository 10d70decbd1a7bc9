// The browser talks to two things only: these server routes (which write rows)
// and Ably (which delivers every row change, via ably_pg).
export default defineNuxtConfig({
  compatibilityDate: '2025-07-15',
  // A client-rendered app: all live state is built in the browser from the
  // database snapshot plus Ably events, so server rendering would add nothing.
  ssr: false,
  devtools: { enabled: false },
  telemetry: false,
  css: ['~/assets/main.css'],
  app: {
    head: {
      title: 'ably_pg chat',
      htmlAttrs: { lang: 'en' },
      meta: [
        { name: 'viewport', content: 'width=device-width, initial-scale=1, viewport-fit=cover, interactive-widget=resizes-content' },
        { name: 'description', content: 'A live chat whose realtime layer is PostgreSQL with the ably_pg extension.' },
        { name: 'theme-color', content: '#ffffff' },
      ],
    },
  },
  runtimeConfig: {
    public: {
      // Empty endpoint means real Ably with the SDK's defaults; set these to
      // point browsers at a local Ably-compatible server ("same-host": the
      // host the page was loaded from).
      ablyEndpoint: '',
      ablyPort: 0,
      ablyTls: true,
      // The demo's database, for the copyable psql command in "How it works"
      // (the local demo only: it is shown to every visitor).
      psqlUrl: '',
    },
  },
})
