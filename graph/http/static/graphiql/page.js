// Starts GraphiQL with the explorer plugin on what the server put in #graphiql-config:
// the example tabs, and whether the server asks for a credential.
(function () {
  "use strict";
  var config = JSON.parse(document.getElementById("graphiql-config").textContent);
  var props = {
    fetcher: GraphiQL.createFetcher({ url: window.location.pathname }),
    plugins: [GraphiQLPluginExplorer.explorerPlugin()],
    defaultTabs: config.tabs,
    // With authentication on, the headers editor is open, holding the header to fill in.
    defaultEditorToolsVisibility: config.headers ? "headers" : true,
    isHeadersEditorEnabled: true,
    shouldPersistHeaders: true,
    inputValueDeprecation: true,
  };
  if (config.headers) {
    props.defaultHeaders = config.headers;
  }
  ReactDOM.createRoot(document.getElementById("graphiql")).render(
    React.createElement(GraphiQL, props),
  );
})();
