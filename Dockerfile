# cardpulse pipeline image; see docker-compose.yml for Kafka, Redis, ClickHouse and Grafana.
# Two stages: the first compiles the TypeScript to JavaScript (npm run build → dist/); the image
# itself holds production dependencies only and runs plain node, with no compiler at run time.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY . .
RUN npm run build

FROM node:20-bookworm-slim
WORKDIR /app
RUN chown node:node /app
USER node
# Dependencies first, so editing the code does not re-run the install.
COPY --chown=node:node package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund
COPY --chown=node:node bin ./bin
COPY --chown=node:node --from=build /app/dist ./dist

# Reachable from outside the container, so a token is needed: without HTTP_TOKEN (or
# HTTP_TOKEN_FILE) `run` refuses to start and says so.
ENV HTTP_PORT=8080 HTTP_HOST=0.0.0.0 NODE_ENV=production
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:'+(process.env.HTTP_PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
CMD ["node", "bin/cardpulse.js", "run"]
