// Starts GraphiQL on the page Cello serves (cello/graphql/ide.py): the endpoint's URL is read from the page, so
// the page needs no inline script and works under a Content-Security-Policy of the app's own origin.
(function () {
  "use strict";
  var element = document.getElementById("graphiql");
  var fetcher = GraphiQL.createFetcher({ url: element.dataset.endpoint });
  ReactDOM.createRoot(element).render(
    React.createElement(GraphiQL, { fetcher: fetcher, defaultEditorToolsVisibility: true })
  );
})();
