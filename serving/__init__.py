"""A registered model as it is served: an MLflow pyfunc over the model zoo, carried inside the
MLflow Model as its own code (`code_paths`). It imports torch, numpy, pandas, MLflow and the zoo,
nothing of Ray, DeepSpeed or genpipe's orchestration, so the model loads wherever its declared
requirements are installed."""
